"""The one error type of the forecast area."""


class ForecastError(ValueError):
    """Bad input to the forecaster, or a missing, corrupt or incompatible checkpoint.

    ``str`` names the offending argument or file.
    """
