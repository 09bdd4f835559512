"""Version numbers reported in every assessment."""

ENGINE_VERSION = "0.2.0"
SCHEMA_VERSION = "1"
