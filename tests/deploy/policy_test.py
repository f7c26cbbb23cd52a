"""What the issue asks of the manifests, checked on what every overlay renders: an app's four
objects, probes on its endpoints, resources, restricted security contexts, grace periods longer
than the graceful shutdown, pinned images, autoscaling on the right signals, network policies
that allow exactly what each app uses, the migration before the apps, Redis's durability."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import orderly_platform.http
import orderly_platform.metrics
from tests.deploy.manifests import (
    EXTERNAL_SECRETS,
    INFRA,
    OVERLAYS,
    Obj,
    Rendered,
    containers,
    main_container,
    pod_labels,
    pod_spec,
    quantity,
)
from tests.deploy.network import Endpoint, can_connect
from tests.deploy.settings_reads import settings_read_by

DEV_ONLY_APPS = {"payment_provider_sim"}


def deployable_apps() -> set[str]:
    """Every app that runs as ``python -m <app>``, but the operator's command."""
    apps = {path.parent.name for path in Path("apps").glob("*/__main__.py")} - {"cli"}
    assert apps, "no apps/*/__main__.py here: does tests/deploy/BUILD depend on every app?"
    return apps


def http_port(container: Obj) -> int:
    [port] = [p for p in container["ports"] if p["name"] == "http"]
    value: int = port["containerPort"]
    return value


@pytest.fixture(params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    return Rendered.of(request.param)


def test_every_app_has_a_deployment_service_config_map_and_pdb(rendered: Rendered) -> None:
    apps = rendered.app_deployments()
    expected = deployable_apps() - (DEV_ONLY_APPS if rendered.overlay == "prod" else set())
    assert set(apps) == expected
    for app, deployment in apps.items():
        labels = pod_labels(deployment)
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        name = deployment["metadata"]["name"]
        service = rendered.get("Service", name)
        assert service["spec"]["selector"].items() <= labels.items(), app
        assert service["spec"]["ports"][0]["targetPort"] == "http"
        pdb = rendered.get("PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), app
        own_config = [
            source["configMapRef"]["name"]
            for source in main_container(deployment).get("envFrom", [])
            if source["configMapRef"]["name"].startswith(f"{name}-config")
        ]
        assert len(own_config) == 1, f"{app} has no ConfigMap of its own"


def test_probes_are_the_apps_endpoints(rendered: Rendered) -> None:
    for app, deployment in rendered.app_deployments().items():
        container = main_container(deployment)
        paths = {
            kind: container[kind]["httpGet"]["path"]
            for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        # Liveness is the process alone: a dependency's outage must not restart every pod.
        assert paths == {
            "startupProbe": "/healthz",
            "livenessProbe": "/healthz",
            "readinessProbe": "/readyz",
        }, app
        for kind in paths:
            assert container[kind]["httpGet"]["port"] == "http", app


def test_prometheus_finds_and_reaches_every_apps_metrics(rendered: Rendered) -> None:
    # Where the pods say their metrics are: the path every service serves (add_metrics).
    assert 'add_get("/metrics"' in inspect.getsource(orderly_platform.metrics.add_metrics)
    prometheus = Endpoint({"app.kubernetes.io/name": "prometheus"}, "monitoring")
    for app, deployment in rendered.app_deployments().items():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        port = http_port(main_container(deployment))
        assert annotations["prometheus.io/scrape"] == "true", app
        assert annotations["prometheus.io/port"] == str(port), app
        assert annotations["prometheus.io/path"] == "/metrics", app
        target = Endpoint(pod_labels(deployment), rendered.namespace)
        assert can_connect(rendered, prometheus, target, port), app
    # Only the scraper: a pod of another namespace still reaches none but the public API.
    stranger = Endpoint({"app.kubernetes.io/name": "prometheus"}, "elsewhere")
    for app, deployment in rendered.app_deployments().items():
        target = Endpoint(pod_labels(deployment), rendered.namespace)
        port = http_port(main_container(deployment))
        assert can_connect(rendered, stranger, target, port) == (app == "order_service"), app


def test_every_container_has_requests_and_limits(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            resources = container.get("resources", {})
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                assert request and limit, f"{where}: no {resource} request or limit"
                assert quantity(request) <= quantity(limit), where


def test_every_pod_is_restricted(rendered: Rendered) -> None:
    namespace = rendered.get("Namespace", rendered.namespace)["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"
    for workload in rendered.workloads():
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, name
        assert pod.get("runAsUser", 0) != 0, name
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(forbidden), f"{name}: {forbidden}"
        assert not any("hostPath" in volume for volume in spec.get("volumes", [])), name
        for container in containers(workload):
            context = container.get("securityContext", {})
            where = f"{name}/{container['name']}"
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("privileged") is not True, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not context.get("capabilities", {}).get("add"), where
            assert context.get("readOnlyRootFilesystem") is True, where


def graceful_shutdown_s() -> float:
    """``shutdown_timeout`` of orderly_platform.http.serve: how long aiohttp lets in-flight
    requests finish on SIGTERM before the apps' cleanup (consumers ack their batch) runs."""
    tree = ast.parse(inspect.getsource(orderly_platform.http.serve))
    [timeout] = [
        keyword.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for keyword in node.keywords
        if keyword.arg == "shutdown_timeout"
    ]
    value = ast.literal_eval(timeout)
    assert isinstance(value, int | float)
    return float(value)


# What the apps' cleanup needs after aiohttp's shutdown: a consumer finishing and acking a batch
# (or a blocking read of up to a second ending), leases handed back, clients closed.
CLEANUP_MARGIN_S = 15


def test_grace_period_outlasts_the_graceful_shutdown(rendered: Rendered) -> None:
    shutdown = graceful_shutdown_s()
    for app, deployment in rendered.app_deployments().items():
        container = main_container(deployment)
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {})
        needed = pre_stop.get("seconds", 0) + shutdown + CLEANUP_MARGIN_S
        grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
        assert grace >= needed, f"{app}: {grace} s < {needed} s"
    # The public API keeps serving while load balancers stop sending it requests.
    api = main_container(rendered.get("Deployment", "order-service"))
    assert api["lifecycle"]["preStop"]["sleep"]["seconds"] > 0


def orderly_image_tag() -> str:
    build = (INFRA / "docker" / "BUILD").read_text()
    match = re.search(r'^ORDERLY_IMAGE_TAG = "([^"]+)"', build, re.MULTILINE)
    assert match, "infra/docker/BUILD names no ORDERLY_IMAGE_TAG"
    return match.group(1)


def built_images() -> set[str]:
    build = (INFRA / "docker" / "BUILD").read_text()
    block = build[build.index("IMAGES = {") : build.index("}", build.index("IMAGES = {"))]
    return {f"orderly/{name}" for name in re.findall(r'^\s+"([a-z-]+)": "', block, re.MULTILINE)}


def test_images_are_pinned(rendered: Rendered) -> None:
    tag = orderly_image_tag()
    for workload in rendered.workloads():
        for container in containers(workload):
            image = container["image"]
            name, _, pinned = image.rpartition(":")
            assert name and pinned and pinned != "latest", f"{image} is not pinned by tag"
            if name.startswith("orderly/"):
                assert pinned == tag, f"{image}: the release is {tag} (infra/docker/BUILD)"
                assert name in built_images(), f"no docker_image builds {name}"


def autoscalers(rendered: Rendered) -> dict[str, list[str]]:
    """Deployment name -> the autoscalers (HPA, ScaledObject) that target it."""
    targets: dict[str, list[str]] = {}
    for hpa in rendered.all("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment"
        targets.setdefault(ref["name"], []).append("HorizontalPodAutoscaler")
    for scaled in rendered.all("ScaledObject"):
        ref = scaled["spec"]["scaleTargetRef"]
        assert ref.get("kind", "Deployment") == "Deployment"
        targets.setdefault(ref["name"], []).append("ScaledObject")
    return targets


def test_an_autoscaler_owns_each_apps_replicas(rendered: Rendered) -> None:
    targets = autoscalers(rendered)
    assert targets.pop("order-service") == ["HorizontalPodAutoscaler"]
    hpa = rendered.get("HorizontalPodAutoscaler", "order-service")
    assert hpa["spec"]["minReplicas"] >= 1
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    for app, deployment in rendered.app_deployments().items():
        name = deployment["metadata"]["name"]
        if app in DEV_ONLY_APPS:
            assert name not in targets
            continue
        if name != "order-service":
            assert targets.get(name) == ["ScaledObject"], f"{app} has no ScaledObject"
        # A replicas field would reset the autoscaler's choice on every apply.
        assert "replicas" not in deployment["spec"], f"{app} sets replicas"
    for name in targets:
        assert rendered.find("Deployment", name), f"an autoscaler targets no Deployment {name}"


def test_migration_runs_before_the_apps(rendered: Rendered) -> None:
    job = rendered.get("Job", "orderly-migrate")
    migrate = main_container(job)
    assert migrate["image"].startswith("orderly/orderly:")
    assert migrate["args"][0] == "migrate"
    database = [e for e in migrate["env"] if e["name"] == "ORDERLY_POSTGRES_URL"]
    assert database, "the migration Job has no ORDERLY_POSTGRES_URL"
    gate_script = (INFRA / "kustomize" / "base" / "wait_for_schema.py").read_text()
    for app, deployment in rendered.app_deployments().items():
        reads_postgres = "ORDERLY_POSTGRES_URL" in settings_read_by(app)
        inits = {c["name"]: c for c in pod_spec(deployment).get("initContainers", [])}
        if not reads_postgres:
            assert "wait-for-schema" not in inits, app
            continue
        gate = inits["wait-for-schema"]
        # The release's migrations: the Job's image, whose head revision the gate waits for.
        assert gate["image"] == migrate["image"], app
        assert [e for e in gate["env"] if e["name"] == "ORDERLY_POSTGRES_URL"] == database, app
        assert gate["command"][-1].endswith("/wait_for_schema.py")
        [mount] = [
            m for m in gate["volumeMounts"] if gate["command"][-1].startswith(m["mountPath"])
        ]
        [volume] = [v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"]]
        data = rendered.config_map_data(volume["configMap"]["name"])
        assert data["wait_for_schema.py"] == gate_script, app


def test_redis_is_durable_and_bounded(rendered: Rendered) -> None:
    redis = rendered.get("StatefulSet", "orderly-redis")
    container = main_container(redis)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    [claim] = redis["spec"]["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]] == "/data"
    config_volume = next(v for v in pod_spec(redis)["volumes"] if v["name"] == "config")
    files = rendered.config_map_data(config_volume["configMap"]["name"])
    settings = dict(
        line.split(None, 1)
        for line in files["redis.conf"].splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] in ("everysec", "always")
    assert settings["dir"] == "/data"
    assert settings["maxmemory-policy"] == "noeviction"  # evicting an event loses it
    assert settings["aclfile"].startswith(mounts["acl"])
    args = container["args"]
    maxmemory = quantity(
        args[args.index("--maxmemory") + 1].replace("mb", "Mi").replace("gb", "Gi")
    )
    assert maxmemory < quantity(container["resources"]["limits"]["memory"])
    # The ACL users: one per app that uses Redis, each named in its app's URL.
    users = {
        line.split()[1]: line
        for line in files["users.acl"].splitlines()
        if line.startswith("user ")
    }
    assert "on" not in users.pop("default").split()
    app_users = set()
    for deployment in rendered.app_deployments().values():
        url = next(
            (
                e["value"]
                for e in main_container(deployment).get("env", [])
                if e["name"] == "ORDERLY_REDIS_URL"
            ),
            None,
        )
        if url:
            user = re.match(r"redis://([^:]+):", url)
            assert user, url
            app_users.add(user.group(1))
            assert user.group(1) == deployment["metadata"]["name"]
    assert set(users) == app_users | {"keda", "operator", "healthcheck"}


def test_dependencies_by_environment(rendered: Rendered) -> None:
    in_namespace = {o["metadata"]["name"] for o in rendered.workloads()}
    dev_stand_ins = {"orderly-postgres", "orderly-temporal", "payment-provider-sim"}
    temporal = rendered.config_map_data("orderly-temporal")["ORDERLY_TEMPORAL_ADDRESS"]
    provider = rendered.config_map_data("payment-service-config")["ORDERLY_PAYMENT_PROVIDER_URL"]
    if rendered.overlay == "dev":
        assert dev_stand_ins <= in_namespace
        assert temporal.startswith(f"orderly-temporal.{rendered.namespace}.svc.cluster.local:")
        assert provider == "http://payment-provider-sim"
        for secret in ("orderly-redis-users", "orderly-postgres", "orderly-api-token"):
            assert rendered.secret_keys(secret), secret
    else:
        assert not dev_stand_ins & in_namespace
        assert not temporal.startswith("orderly-temporal")
        assert provider.startswith("https://")
        # Its secrets are the operator's (docs/deploy.md), never in git.
        assert not rendered.all("Secret")


def test_docs_name_every_secret_the_operator_creates() -> None:
    guide = Path("docs/deploy.md").read_text()
    for overlay, secrets in EXTERNAL_SECRETS.items():
        for secret, keys in secrets.items():
            assert secret in guide, f"docs/deploy.md does not name {secret} ({overlay})"
            for key in keys:
                assert key in guide, f"docs/deploy.md does not name {secret}'s key {key}"


# --- autoscaling on lag ---------------------------------------------------------------------


def consumer_groups() -> dict[str, dict[str, list[str]]]:
    """App -> its consumer groups -> the stream categories each reads (from the apps' code)."""
    from eventbus.topology import CATEGORIES, ORDERS
    from inventory.service import INVENTORY_GROUP
    from notification_service.app import GROUP as NOTIFICATIONS_GROUP
    from projections.registry import PROJECTIONS
    from saga.bridge import BRIDGE_GROUP

    return {
        "projector": {name: list(CATEGORIES) for name in PROJECTIONS},
        "saga-worker": {BRIDGE_GROUP: [ORDERS]},
        "inventory-service": {INVENTORY_GROUP: [ORDERS]},
        "notification-service": {NOTIFICATIONS_GROUP: [ORDERS]},
    }


def task_queues() -> dict[str, str]:
    from contracts.payments import PAYMENTS_TASK_QUEUE
    from saga.messages import ORDERS_TASK_QUEUE

    return {"saga-worker": ORDERS_TASK_QUEUE, "payment-service": PAYMENTS_TASK_QUEUE}


def test_keda_scales_each_consumer_group_on_its_lag(rendered: Rendered) -> None:
    from eventbus.topology import Topology

    partitions = int(rendered.config_map_data("orderly-shared")["ORDERLY_STREAM_PARTITIONS"])
    topology = Topology(partitions=partitions)
    redis_address = f"orderly-redis.{rendered.namespace}.svc.cluster.local:6379"
    auth = rendered.get("TriggerAuthentication", "orderly-keda-redis")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "orderly-redis-users", "key": "keda"}
    ]
    for name, groups in consumer_groups().items():
        scaled = rendered.get("ScaledObject", name)
        triggers = [t for t in scaled["spec"]["triggers"] if t["type"] == "redis-streams"]
        expected = {
            (group, partition.stream)
            for group, categories in groups.items()
            for category in categories
            for partition in topology.partitions_of(category)
        }
        got = {(t["metadata"]["consumerGroup"], t["metadata"]["stream"]) for t in triggers}
        assert got == expected, f"{name}: triggers for {sorted(got ^ expected)}"
        for trigger in triggers:
            metadata = trigger["metadata"]
            assert int(metadata["lagCount"]) > 0
            assert metadata["address"] == redis_address
            assert metadata["username"] == "keda"
            assert trigger["authenticationRef"]["name"] == "orderly-keda-redis"
        # A partition is leased to one consumer per group: replicas past a group's partitions
        # idle, unless a Temporal task queue gives them work.
        most_partitions = max(len(c) * partitions for c in groups.values())
        if not any(t["type"] == "temporal" for t in scaled["spec"]["triggers"]):
            assert scaled["spec"]["maxReplicaCount"] <= most_partitions, name


def test_keda_scales_temporal_workers_on_their_task_queue(rendered: Rendered) -> None:
    namespace = rendered.config_map_data("orderly-temporal")["ORDERLY_TEMPORAL_NAMESPACE"]
    for name, queue in task_queues().items():
        scaled = rendered.get("ScaledObject", name)
        [trigger] = [t for t in scaled["spec"]["triggers"] if t["type"] == "temporal"]
        metadata = trigger["metadata"]
        assert metadata["taskQueue"] == queue
        assert metadata["namespace"] == namespace
        # KEDA reads the address from the worker's own environment.
        container = main_container(rendered.get("Deployment", name))
        config_maps = [s["configMapRef"]["name"] for s in container["envFrom"]]
        assert any(
            metadata["endpointFromEnv"] in rendered.config_map_data(c) for c in config_maps
        ), name


# --- network policies -----------------------------------------------------------------------

DEPENDENCY_SETTINGS = {
    "ORDERLY_REDIS_URL": "redis",
    "ORDERLY_POSTGRES_URL": "postgres",
    "ORDERLY_TEMPORAL_ADDRESS": "temporal",
    "ORDERLY_PAYMENT_PROVIDER_URL": "payment-provider",
}


def dependency_endpoints(rendered: Rendered) -> dict[str, tuple[Endpoint, int]]:
    """Where each dependency is reached in this overlay, and on which port."""
    ns = rendered.namespace

    def pod(name: str) -> Endpoint:
        workload = next(w for w in rendered.workloads() if w["metadata"]["name"] == name)
        return Endpoint(pod_labels(workload), ns)

    places = {"redis": (pod("orderly-redis"), 6379)}
    if rendered.overlay == "dev":
        places["postgres"] = (pod("orderly-postgres"), 5432)
        places["temporal"] = (pod("orderly-temporal"), 7233)
        places["payment-provider"] = (pod("payment-provider-sim"), 8080)
    else:
        places["postgres"] = (Endpoint(external=True), 5432)
        places["temporal"] = (Endpoint(namespace="temporal"), 7233)
        places["payment-provider"] = (Endpoint(external=True), 443)
    return places


def test_network_policies_allow_what_each_app_uses_and_nothing_else(rendered: Rendered) -> None:
    [deny] = [p for p in rendered.all("NetworkPolicy") if p["metadata"]["name"] == "default-deny"]
    assert deny["spec"]["podSelector"] == {}
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    places = dependency_endpoints(rendered)
    for app, deployment in rendered.app_deployments().items():
        source = Endpoint(pod_labels(deployment), rendered.namespace)
        uses = {DEPENDENCY_SETTINGS[s] for s in settings_read_by(app) if s in DEPENDENCY_SETTINGS}
        for dependency, (target, port) in places.items():
            allowed = can_connect(rendered, source, target, port)
            assert allowed == (dependency in uses), (
                f"{rendered.overlay}: {app} {'cannot' if dependency in uses else 'can'} reach "
                f"{dependency}"
            )
        dns = Endpoint({"k8s-app": "kube-dns"}, "kube-system")
        assert can_connect(rendered, source, dns, 53), f"{app} cannot resolve names"
    # The public API is reachable from outside; the other apps are not.
    outside = Endpoint(external=True)
    for app, deployment in rendered.app_deployments().items():
        target = Endpoint(pod_labels(deployment), rendered.namespace)
        public = can_connect(rendered, outside, target, http_port(main_container(deployment)))
        assert public == (app == "order_service"), app
    # KEDA's operator reads the lag in Redis (and the task queues, where Temporal is ours).
    keda = Endpoint({"app.kubernetes.io/name": "keda-operator"}, "keda")
    for dependency in ("redis", "temporal"):
        target, port = places[dependency]
        assert can_connect(rendered, keda, target, port), dependency
    # The migration (and the schema gate, in the apps' pods) reaches Postgres.
    job = rendered.get("Job", "orderly-migrate")
    target, port = places["postgres"]
    assert can_connect(rendered, Endpoint(pod_labels(job), rendered.namespace), target, port)
