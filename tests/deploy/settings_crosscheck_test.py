"""Every ORDERLY_* variable an app reads is set by its manifests, and every one they set is read:
no app starts on a default nobody chose, and no ConfigMap key is a typo that nothing reads.

What an app reads comes from its code (settings_reads.py), not from a list kept here.
"""

from __future__ import annotations

import importlib

import pytest

from orderly_platform.settings import ENV_PREFIX, Settings, load_settings
from payment_provider_sim.faults import FaultKnobs
from payment_provider_sim.settings import (
    ENV_PREFIX as SIMULATOR_PREFIX,
)
from payment_provider_sim.settings import (
    SimulatorSettings,
    load_simulator_settings,
)
from tests.deploy.environment import container_environment
from tests.deploy.manifests import EXTERNAL_SECRETS, OVERLAYS, Rendered, main_container, pod_spec
from tests.deploy.settings_reads import settings_read_by

# The simulator's own knobs: optional (every default is "no fault"), each may be set.
SIMULATOR_VARIABLES = {
    SIMULATOR_PREFIX + name.upper()
    for name in (set(SimulatorSettings.__struct_fields__) - {"faults"})
    | set(FaultKnobs.__struct_fields__)
}


def orderly_variables(values: dict[str, str]) -> set[str]:
    return {name for name in values if name.startswith(ENV_PREFIX)}


@pytest.fixture(params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    return Rendered.of(request.param)


def test_each_app_gets_exactly_the_settings_it_reads(rendered: Rendered) -> None:
    for app, deployment in rendered.app_deployments().items():
        environment = container_environment(rendered, main_container(deployment))
        given = orderly_variables(environment.values)
        reads = settings_read_by(app)
        optional = SIMULATOR_VARIABLES if app == "payment_provider_sim" else set()
        assert reads <= given, f"{rendered.overlay}: {app} reads unset {sorted(reads - given)}"
        assert given <= reads | optional, (
            f"{rendered.overlay}: {app} is given {sorted(given - reads - optional)}, "
            "which it never reads"
        )


def test_every_config_map_key_is_read(rendered: Rendered) -> None:
    readers: dict[str, set[str]] = {}
    for app, deployment in rendered.app_deployments().items():
        environment = container_environment(rendered, main_container(deployment))
        for name in environment.config_maps:
            readers.setdefault(rendered.config_map(name)["metadata"]["name"], set()).add(app)
    mounted = {
        volume["configMap"]["name"]
        for workload in rendered.workloads()
        for volume in pod_spec(workload).get("volumes", [])
        if "configMap" in volume
    }
    for config_map in rendered.all("ConfigMap"):
        name = config_map["metadata"]["name"]
        if name in mounted:
            continue  # files (redis.conf, the schema gate), read by what mounts them
        assert name in readers, f"{rendered.overlay}: ConfigMap {name} is used by nothing"
        for key in config_map.get("data", {}):
            # Each app that takes the whole ConfigMap reads every key of it.
            for app in readers[name]:
                optional = SIMULATOR_VARIABLES if app == "payment_provider_sim" else set()
                assert (
                    key in settings_read_by(app) | optional
                ), f"{rendered.overlay}: {name} sets {key}, which {app} does not read"


def test_each_app_starts_with_its_rendered_settings(rendered: Rendered) -> None:
    """The values parse (types, ranges), and each app's factory accepts them: nothing that it
    requires is missing. Servers are bound to every interface on the port the probes use."""
    for app, deployment in rendered.app_deployments().items():
        container = main_container(deployment)
        environment = container_environment(rendered, container)
        settings = load_settings(environment.values)
        assert settings.http_host == "0.0.0.0", app
        [port] = [p["containerPort"] for p in container["ports"] if p["name"] == "http"]
        assert settings.http_port == port, app
        assert settings.log_format == "json", app
        module = importlib.import_module(f"{app}.app")
        if app == "payment_provider_sim":
            simulator = load_simulator_settings(environment.values)
            assert simulator.ledger_dir(settings.data_dir).is_relative_to(
                next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "ledger")
            )
            module.create_app(settings, simulator)
        else:
            module.create_app(settings)


def test_the_secrets_an_overlay_leaves_out_are_the_documented_ones(rendered: Rendered) -> None:
    external: dict[str, set[str]] = {}
    for workload in rendered.workloads():
        for container in [*pod_spec(workload).get("initContainers", []), main_container(workload)]:
            for secret, key in container_environment(rendered, container).external:
                external.setdefault(secret, set()).add(key)
    for volume_source in (
        volume["secret"]["secretName"]
        for workload in rendered.workloads()
        for volume in pod_spec(workload).get("volumes", [])
        if "secret" in volume
    ):
        if rendered.find("Secret", volume_source) is None:
            external.setdefault(volume_source, set())
    expected = EXTERNAL_SECRETS[rendered.overlay]
    assert set(external) == set(expected)
    for secret, keys in external.items():
        assert keys <= expected[secret], secret


def test_no_service_link_adds_orderly_variables(rendered: Rendered) -> None:
    """Kubernetes would add <SERVICE>_PORT and such for every Service of the namespace, and the
    Services orderly-redis, orderly-postgres... would make them ORDERLY_* variables."""
    for workload in rendered.workloads():
        assert pod_spec(workload).get("enableServiceLinks") is False, workload["metadata"]["name"]


def test_the_migration_job_sets_settings_only(rendered: Rendered) -> None:
    job = rendered.get("Job", "orderly-migrate")
    environment = container_environment(rendered, main_container(job))
    fields = {ENV_PREFIX + f.upper() for f in Settings.__struct_fields__}
    assert orderly_variables(environment.values) <= fields
    assert "ORDERLY_POSTGRES_URL" in environment.values
