"""The defaults of a Bulk Data export, importable without its network libraries (the
command line shows them in its help)."""

# The scope asked for: read access to every resource type (SMART v1 syntax, which v2
# servers accept too); b12dx asks the export for the types it reads only (_type).
DEFAULT_SCOPE = "system/*.read"
# The longest an export may take, kick-off to manifest, in seconds.
DEFAULT_WAIT_S = 3600.0
