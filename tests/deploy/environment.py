"""The environment a rendered container gets: its env and envFrom, resolved as the kubelet does."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from tests.deploy.manifests import Obj, Rendered

# Stand-ins for the values of Secrets an overlay leaves to the operator, by key.
_EXTERNAL_VALUES = {
    "url": "postgresql://orderly:secret@postgres.example:5432/orderly",
    "token": "secret-token",
}
_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass
class ContainerEnvironment:
    values: dict[str, str] = field(default_factory=dict)
    # (secret, key) read from Secrets that the overlay does not render.
    external: set[tuple[str, str]] = field(default_factory=set)
    # ConfigMaps it reads whole (envFrom).
    config_maps: list[str] = field(default_factory=list)


def container_environment(rendered: Rendered, container: Obj) -> ContainerEnvironment:
    environment = ContainerEnvironment()
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            environment.config_maps.append(name)
            data = rendered.config_map_data(name)
        else:
            name = source["secretRef"]["name"]
            data = {
                key: _secret_value(rendered, name, key, environment)
                for key in rendered.secret_keys(name) or ()
            }
        environment.values.update({prefix + key: value for key, value in data.items()})
    for variable in container.get("env", []):
        name = variable["name"]
        if "value" in variable:
            environment.values[name] = _expand(variable["value"], environment.values)
            continue
        source = variable["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            environment.values[name] = _secret_value(rendered, ref["name"], ref["key"], environment)
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            environment.values[name] = rendered.config_map_data(ref["name"])[ref["key"]]
        else:
            raise AssertionError(f"{name}: unexpected valueFrom {source}")
    return environment


def _expand(value: str, defined: dict[str, str]) -> str:
    # $(NAME) refers to a variable defined before it; anything else stays as written.
    return _REFERENCE.sub(lambda m: defined.get(m.group(1), m.group(0)), value)


def _secret_value(
    rendered: Rendered, name: str, key: str, environment: ContainerEnvironment
) -> str:
    secret = rendered.find("Secret", name)
    if secret is None:
        environment.external.add((name, key))
        return _EXTERNAL_VALUES.get(key, "secret-password")
    if key in secret.get("stringData", {}):
        value: str = secret["stringData"][key]
        return value
    assert key in secret.get("data", {}), f"Secret {name} has no key {key}"
    return base64.b64decode(secret["data"][key]).decode()
