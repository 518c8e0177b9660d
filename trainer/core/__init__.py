"""The shared core: what the app (``segwatch``, which never imports torch) and the trainer both import.

What may live here: pure Python plus PyYAML, nothing that imports torch, numpy or PIL at module
level (``fmeasure`` alone uses numpy; only ``segwatch evaluate`` loads it). Each module is one
table the two programs must agree on beside the run directory:

* ``config``    the run config schema: every key's type, range and allowed text
* ``coerce``    a written config value to its field's type; ``ConfigError``
* ``live``      the settings a running trainer accepts, and the control commands
* ``safe_yaml`` reading untrusted YAML; a value a person types; number checks
* ``classes``   the 19 face-parsing classes, the flip permutation, the ignore index
* ``fmeasure``  the organisers' F-measure (numpy), as the trainer reports it

``tests/app/test_torch_free.py`` fails if an app module pulls torch, numpy or PIL in through here.
Nothing in this package imports from the rest of ``trainer``.
"""
