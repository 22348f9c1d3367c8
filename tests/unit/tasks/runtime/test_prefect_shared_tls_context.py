"""The shared TLS context of Prefect's API clients (no network: clients are built, never
entered)."""

from __future__ import annotations

import ssl

import certifi


def test_verified_contexts_are_shared_and_insecure_ones_are_not() -> None:
    from prefect.client import orchestration

    from tasks.runtime.prefect_shared_tls_context import share_api_tls_context

    assert share_api_tls_context() is True
    assert share_api_tls_context() is True  # idempotent
    shim = orchestration.ssl
    first = shim.create_default_context(cafile=certifi.where())
    assert shim.create_default_context(cafile=certifi.where()) is first
    assert isinstance(first, ssl.SSLContext) and first.verify_mode == ssl.CERT_REQUIRED
    # the insecure path mutates what it gets: never the shared context
    a, b = shim.create_default_context(), shim.create_default_context()
    assert a is not b and a is not first
    assert shim.SSLContext is ssl.SSLContext and shim.CERT_NONE is ssl.CERT_NONE


def test_prefect_clients_get_the_one_context() -> None:
    from prefect.client.orchestration import SyncPrefectClient

    from tasks.runtime.prefect_shared_tls_context import share_api_tls_context

    share_api_tls_context()
    built: list[ssl.SSLContext] = []
    real = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        built.append(self)
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    ssl.SSLContext.load_verify_locations = counting  # type: ignore[method-assign]
    try:
        for _ in range(3):
            SyncPrefectClient("http://127.0.0.1:9/api")
    finally:
        ssl.SSLContext.load_verify_locations = real  # type: ignore[method-assign]
    assert len(built) <= 1  # at most the first client parsed the CA bundle


def test_the_version_check_uses_the_same_context() -> None:
    from prefect._internal import version_checking
    from prefect.client import orchestration

    from tasks.runtime.prefect_shared_tls_context import share_api_tls_context

    assert share_api_tls_context() is True
    assert version_checking.ssl is orchestration.ssl
    first = orchestration.ssl.create_default_context(cafile=certifi.where())
    assert version_checking.ssl.create_default_context(cafile=certifi.where()) is first
