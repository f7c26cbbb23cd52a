"""Who may talk to whom under the rendered NetworkPolicies: a small evaluator of their rules.

It reads what the manifests use (pod and namespace selectors by matchLabels, ipBlock, ports)
and refuses anything else (matchExpressions, named ports) rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.deploy.manifests import Obj, Rendered


@dataclass(frozen=True)
class Endpoint:
    """A pod (labels, namespace) or, with ``external``, an address outside the cluster."""

    labels: dict[str, str] = field(default_factory=dict)
    namespace: str = ""
    external: bool = False

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def _matches(selector: Obj, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"selector not understood: {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_matches(peer: Obj, other: Endpoint, own_namespace: str) -> bool:
    if "ipBlock" in peer:
        return other.external
    if other.external:
        return False
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != own_namespace:
        return False
    return "podSelector" not in peer or _matches(peer["podSelector"], other.labels)


def _port_matches(ports: list[Obj] | None, port: int) -> bool:
    if not ports:
        return True
    for entry in ports:
        assert isinstance(entry.get("port", 0), int), f"named ports not understood: {entry}"
        if entry.get("protocol", "TCP") == "TCP" and entry.get("port") in (None, port):
            return True
    return False


def _allowed(rendered: Rendered, pod: Endpoint, other: Endpoint, port: int, direction: str) -> bool:
    if pod.namespace != rendered.namespace:
        return True  # another namespace's policies decide; they are not rendered here
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    policies = [
        p
        for p in rendered.all("NetworkPolicy")
        if direction in p["spec"].get("policyTypes", ["Ingress"])
        and _matches(p["spec"]["podSelector"], pod.labels)
    ]
    if not policies:
        return True  # no policy isolates this pod in that direction
    for policy in policies:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            if _port_matches(rule.get("ports"), port) and (
                not peers or any(_peer_matches(p, other, pod.namespace) for p in peers)
            ):
                return True
    return False


def can_connect(rendered: Rendered, source: Endpoint, target: Endpoint, port: int) -> bool:
    """Whether ``source`` may open a TCP connection to ``target:port`` (both ends' policies)."""
    egress = source.external or _allowed(rendered, source, target, port, "Egress")
    ingress = target.external or _allowed(rendered, target, source, port, "Ingress")
    return egress and ingress
