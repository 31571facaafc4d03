"""MLflow artifacts addressed relative to $DEMAND_HOME, so a copied or moved store still opens
its models.

MLflow records every run's and logged model's artifact URI in the tracking store. With the
embedded default those were absolute `file://` paths under the DEMAND_HOME of the day, so after
moving the folder (or restoring a backup elsewhere) every model load failed. New experiments of
the embedded store take the artifact root `demand-home:/mlflow/artifacts` instead: an MLflow
artifact-repository plugin (registered under the entry point group `mlflow.artifact_repository`
in pyproject.toml) that resolves the path against $DEMAND_HOME when the artifact is read or
written. A tracking server or object storage (`artifact_location` set) is unaffected.
"""

from __future__ import annotations

from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

from resources.home import demand_home

__all__ = ["SCHEME", "DemandHomeArtifactRepository", "home_uri"]

SCHEME = "demand-home"


def home_uri(relative: str) -> str:
    """The artifact URI of `relative` (a path inside $DEMAND_HOME)."""
    return f"{SCHEME}:/{relative.strip('/')}"


def resolve(artifact_uri: str) -> str:
    """The local file URI of a demand-home URI under today's $DEMAND_HOME."""
    if not artifact_uri.startswith(f"{SCHEME}:"):
        raise ValueError(f"not a {SCHEME} URI: {artifact_uri!r}")
    relative = artifact_uri[len(SCHEME) + 1 :].lstrip("/")
    return (demand_home() / relative).as_uri()


class DemandHomeArtifactRepository(LocalArtifactRepository):
    """A local artifact repository whose root is resolved against $DEMAND_HOME at access time."""

    def __init__(self, artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None) -> None:
        super().__init__(resolve(artifact_uri), tracking_uri=tracking_uri, registry_uri=registry_uri)
