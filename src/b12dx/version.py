"""Version numbers reported in every assessment."""

ENGINE_VERSION = "0.2.0"
SCHEMA_VERSION = "1"


def versions() -> dict[str, str]:
    """What an installation runs: the package (as installed), the engine and the
    knowledge base that decide every assessment, and the contract they speak."""
    from importlib.metadata import PackageNotFoundError, version

    from b12dx.knowledge.loader import load_knowledge

    try:
        package = version("b12dx")
    except PackageNotFoundError:  # run from a source tree that is not installed
        package = "unknown"
    return {
        "b12dx": package,
        "engine": ENGINE_VERSION,
        "knowledge": load_knowledge().version,
        "contract": SCHEMA_VERSION,
    }
