"""Configuration: dataclass schemas (``schema``) loaded from YAML + overrides (``loader``)."""
