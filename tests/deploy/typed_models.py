"""Rendered objects loaded into typed models, refusing any field the model does not have.

Kubernetes objects go into the ``kubernetes`` client's models (pydantic, generated from the
API's OpenAPI types: required fields, types, no extra field). The client's ``from_dict`` would
drop an unknown field in silence, and the API server would too (or only warn): a misspelt
``readinessprobe`` would deploy a pod without one. KEDA's objects, which the client has no models for, go into structs written
after KEDA's ScaledObject and TriggerAuthentication specifications, for the fields orderly uses.
"""

from __future__ import annotations

from typing import Any, Literal

import kubernetes.client.models as k8s
import msgspec

from tests.deploy.manifests import Obj


class UnknownField(AssertionError):
    pass


def k8s_model_name(api_version: str, kind: str) -> str:
    """``apps/v1`` ``Deployment`` -> ``V1Deployment`` (the client's naming)."""
    version = api_version.rpartition("/")[2]
    return version[0].upper() + version[1:] + kind


def load_k8s(data: Any, model: str, path: str = "") -> Any:
    """``data`` validated into the client's (pydantic) ``model``, whose configuration forbids
    extra fields at every level. (The client's own ``from_dict`` drops them instead.)"""
    klass = getattr(k8s, model)
    try:
        return klass.model_validate(data)
    except ValueError as exc:  # pydantic's ValidationError
        raise UnknownField(f"{path or model}: {exc}") from None


# --- KEDA ---------------------------------------------------------------------------------


class _Strict(msgspec.Struct, forbid_unknown_fields=True, rename="camel", kw_only=True):
    pass


class ScaleTargetRef(_Strict):
    name: str
    api_version: str | None = None
    kind: str | None = None
    env_source_container_name: str | None = None


class AuthenticationRef(_Strict):
    name: str
    kind: Literal["TriggerAuthentication", "ClusterTriggerAuthentication"] | None = None


# Each scaler's metadata keys (KEDA ignores one it does not know, so a typo would go unseen).
SCALER_METADATA = {
    "redis-streams": {
        "address",
        "addressFromEnv",
        "host",
        "hostFromEnv",
        "port",
        "portFromEnv",
        "username",
        "usernameFromEnv",
        "passwordFromEnv",
        "stream",
        "consumerGroup",
        "pendingEntriesCount",
        "streamLength",
        "lagCount",
        "activationLagCount",
        "enableTLS",
        "unsafeSsl",
        "databaseIndex",
    },
    "temporal": {
        "endpoint",
        "endpointFromEnv",
        "namespace",
        "taskQueue",
        "targetQueueSize",
        "activationTargetQueueSize",
        "queueTypes",
        "buildId",
        "workerDeploymentName",
        "workerDeploymentBuildId",
        "minConnectTimeout",
        "unsafeSsl",
        "tlsServerName",
    },
}


class Trigger(_Strict):
    type: str
    metadata: dict[str, str]
    name: str | None = None
    use_cached_metrics: bool | None = None
    authentication_ref: AuthenticationRef | None = None
    metric_type: Literal["AverageValue", "Value", "Utilization"] | None = None


class HorizontalPodAutoscalerConfig(_Strict):
    name: str | None = None
    behavior: dict[str, Any] | None = None  # an HPA's behavior: loaded into the client's model


class Advanced(_Strict):
    restore_to_original_replica_count: bool | None = None
    horizontal_pod_autoscaler_config: HorizontalPodAutoscalerConfig | None = None


class Fallback(_Strict):
    failure_threshold: int
    replicas: int
    behavior: str | None = None


class ScaledObjectSpec(_Strict):
    scale_target_ref: ScaleTargetRef
    triggers: list[Trigger]
    polling_interval: int | None = None
    cooldown_period: int | None = None
    initial_cooldown_period: int | None = None
    idle_replica_count: int | None = None
    min_replica_count: int | None = None
    max_replica_count: int | None = None
    fallback: Fallback | None = None
    advanced: Advanced | None = None


class ScaledObject(_Strict):
    api_version: Literal["keda.sh/v1alpha1"]
    kind: Literal["ScaledObject"]
    metadata: dict[str, Any]
    spec: ScaledObjectSpec


class SecretTargetRef(_Strict):
    parameter: str
    name: str
    key: str


class TriggerAuthenticationSpec(_Strict):
    secret_target_ref: list[SecretTargetRef]


class TriggerAuthentication(_Strict):
    api_version: Literal["keda.sh/v1alpha1"]
    kind: Literal["TriggerAuthentication"]
    metadata: dict[str, Any]
    spec: TriggerAuthenticationSpec


KEDA_MODELS: dict[str, type[_Strict]] = {
    "ScaledObject": ScaledObject,
    "TriggerAuthentication": TriggerAuthentication,
}


def load(obj: Obj) -> Any:
    """Any rendered object in its typed model; UnknownField on a field it does not have."""
    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    if obj.get("apiVersion", "").startswith("keda.sh/"):
        try:
            typed = msgspec.convert(obj, KEDA_MODELS[obj["kind"]])
        except msgspec.ValidationError as exc:
            raise UnknownField(f"{name}: {exc}") from None
        load_k8s(obj["metadata"], "V1ObjectMeta", f"{name}.metadata")
        if isinstance(typed, ScaledObject):
            for trigger in typed.spec.triggers:
                unknown = set(trigger.metadata) - SCALER_METADATA.get(trigger.type, set())
                if unknown:
                    raise UnknownField(f"{name}: {trigger.type} trigger: no {sorted(unknown)}")
            config = typed.spec.advanced and typed.spec.advanced.horizontal_pod_autoscaler_config
            if config and config.behavior is not None:
                load_k8s(config.behavior, "V2HorizontalPodAutoscalerBehavior", f"{name}.behavior")
        return typed
    return load_k8s(obj, k8s_model_name(obj["apiVersion"], obj["kind"]), name)
