"""Every overlay renders with `kubectl kustomize`, and every object it renders is well-formed:
it loads into its typed model (the Kubernetes client's, or KEDA's) without an unknown field."""

from __future__ import annotations

import copy

import pytest

from tests.deploy.manifests import KUSTOMIZE, OVERLAYS, Rendered, main_container, render
from tests.deploy.typed_models import UnknownField, load


@pytest.mark.parametrize("path", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_it_renders(path: str) -> None:
    assert render(KUSTOMIZE / path)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_loads_into_its_typed_model(overlay: str) -> None:
    rendered = Rendered.of(overlay)
    for obj in rendered.objects:
        load(obj)
    kinds = {o["kind"] for o in rendered.objects}
    assert {"Deployment", "StatefulSet", "Job", "ScaledObject", "NetworkPolicy"} <= kinds


def test_a_misspelt_field_is_refused() -> None:
    rendered = Rendered.of("dev")
    deployment = copy.deepcopy(rendered.get("Deployment", "order-service"))
    container = main_container(deployment)
    container["readinessprobe"] = container.pop("readinessProbe")
    with pytest.raises(UnknownField, match="readinessprobe"):
        load(deployment)

    scaled = copy.deepcopy(rendered.get("ScaledObject", "inventory-service"))
    scaled["spec"]["triggers"][0]["metadata"]["lagcount"] = "5"
    with pytest.raises(UnknownField, match="lagcount"):
        load(scaled)

    scaled = copy.deepcopy(rendered.get("ScaledObject", "inventory-service"))
    scaled["spec"]["maxReplicas"] = 3
    with pytest.raises(UnknownField, match="maxReplicas"):
        load(scaled)


def test_a_missing_required_field_is_refused() -> None:
    deployment = copy.deepcopy(Rendered.of("dev").get("Deployment", "projector"))
    del main_container(deployment)["name"]
    with pytest.raises(UnknownField, match="name"):
        load(deployment)
