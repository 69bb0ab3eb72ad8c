"""plugins/doc_fragments/ipvs_options.py is what tests/docgen/ipvs_options.py writes."""

from __future__ import annotations

import importlib.util
import os

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
FRAGMENT = os.path.join(
    os.path.dirname(os.path.dirname(HERE)), "plugins", "doc_fragments", "ipvs_options.py"
)


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "docgen_ipvs_options", os.path.join(HERE, "ipvs_options.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_fragment_is_up_to_date() -> None:
    with open(FRAGMENT, encoding="utf-8") as handle:
        assert handle.read() == _generator().render(), "run `make fragments`"


def test_every_place_documents_the_argument_spec() -> None:
    from ansible_collections.haecs.lvs.plugins.module_utils import _ipvs_module as glue

    namespace: dict[str, object] = {}
    with open(FRAGMENT, encoding="utf-8") as handle:
        exec(compile(handle.read(), FRAGMENT, "exec"), namespace)
    fragment = namespace["ModuleDocFragment"]

    def options(name: str) -> dict[str, dict[str, object]]:
        return yaml.safe_load(getattr(fragment, name))["options"]

    def same(documented: dict[str, dict[str, object]], spec: dict[str, dict[str, object]]) -> None:
        assert set(documented) == set(spec)
        for name, option in spec.items():
            for key in ("type", "choices", "elements", "required"):
                assert documented[name].get(key) == option.get(key), (name, key)

    same(options("DOCUMENTATION"), glue.service_key_spec())
    same(dict(options("DOCUMENTATION"), **options("SERVICE")), glue.service_spec())
    real_server = options("REAL_SERVER")
    same(real_server["virtual_service"]["suboptions"], glue.service_key_spec())
    same({k: v for k, v in real_server.items() if k != "virtual_service"}, glue.real_server_spec())
    services = options("TABLE")["services"]["suboptions"]
    same(services["real_servers"]["suboptions"], glue.real_server_spec())
    same({k: v for k, v in services.items() if k != "real_servers"}, glue.service_spec())
