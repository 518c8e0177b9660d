"""A config value as written (YAML, ``--set``) to its field's type, and the error every config
check raises. Pure Python; trainer.core.config builds the schema on it."""

from __future__ import annotations

import math
from typing import Any

from trainer.core.safe_yaml import show as _show


class ConfigError(ValueError):
    """A config file, override or value that cannot be used; the message is one line."""


def coerce(value: Any, typ: Any, where: str, allowed: str) -> Any:
    """Coerce a YAML value to the field's type; numbers written as '5e-4' (YAML 1.1 strings) are accepted."""
    bad = ConfigError(f"{where} = {_show(value)}: wrong type; allowed: {allowed}")
    if typ in (float, "float"):
        if isinstance(value, bool):
            raise bad
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise bad from None
        if not isinstance(value, (int, float)):
            raise bad
        try:
            value = float(value)
        except OverflowError:
            raise ConfigError(f"{where} = {_show(value)}: out of range; allowed: {allowed}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{where} = {value!r}: not a finite number; allowed: {allowed}")
        return value
    if typ in (int, "int"):
        if isinstance(value, bool):
            raise bad
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise bad
        return value
    if typ in (bool, "bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {_show(value)}: wrong type; allowed: true | false")
        return value
    if typ in (str, "str"):
        if not isinstance(value, str):
            raise bad
        return value
    # Any: numbers-as-strings inside lists (focal_alpha, scale_range) are coerced too
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, (list, tuple)):
        out = []
        for x in value:
            if isinstance(x, str):
                try:
                    x = float(x)
                except ValueError:
                    pass
            if isinstance(x, float) and not math.isfinite(x):
                raise ConfigError(f"{where} = {_show(value)}: holds a non-finite number; allowed: {allowed}")
            out.append(x)
        return out
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} = {value!r}: not a finite number; allowed: {allowed}")
    return value
