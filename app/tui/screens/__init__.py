"""Screens of the cockpit: the modal dialogs and the help screen."""
