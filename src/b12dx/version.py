"""Version numbers reported in every assessment."""

import functools

ENGINE_VERSION = "0.2.0"
SCHEMA_VERSION = "1"


@functools.cache
def package_version() -> str:
    """The installed package's version, read once (the health check asks on every call)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("b12dx")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def versions() -> dict[str, str]:
    """What an installation runs: the package (as installed), the engine and the
    knowledge base that decide every assessment, and the contract they speak."""
    from b12dx.knowledge.loader import load_knowledge

    return {
        "b12dx": package_version(),
        "engine": ENGINE_VERSION,
        "knowledge": load_knowledge().version,
        "contract": SCHEMA_VERSION,
    }
