"""Which names a certificate covers, when it is renewed, how failed orders wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dockyard.domain.certificates import (
    ACME,
    FAILED,
    ISSUED,
    MANUAL,
    PENDING,
    USER,
    Certificate,
    covers,
    needs_order,
    retry_delay,
)

NOW = datetime(2026, 12, 4, tzinfo=UTC)


def test_covers_exact_and_one_label_wildcards() -> None:
    assert covers("www.shop.example", "WWW.shop.example.")
    assert covers("*.shop.example", "cart.shop.example")
    assert not covers("*.shop.example", "shop.example")
    assert not covers("*.shop.example", "a.b.shop.example")
    assert covers("*.shop.example", "*.shop.example")
    assert not covers("www.shop.example", "api.shop.example")


def test_back_off_doubles_up_to_six_hours() -> None:
    assert [retry_delay(n) for n in (1, 2, 3)] == [timedelta(minutes=m) for m in (1, 2, 4)]
    assert retry_delay(50) == timedelta(hours=6)


def cert(**kw: object) -> Certificate:
    base: dict[str, object] = {"name": "a.example", "app_id": 1, "source": ACME, "status": ISSUED}
    return Certificate(**{**base, **kw})  # type: ignore[arg-type]


def test_when_an_order_is_due() -> None:
    assert needs_order(cert(status=PENDING), NOW)
    assert not needs_order(cert(status=PENDING, next_attempt_at=NOW + timedelta(seconds=1)), NOW)
    assert needs_order(cert(status=FAILED, next_attempt_at=NOW), NOW)
    fresh = cert(not_after=NOW + timedelta(days=31), has_chain=True)
    assert not needs_order(fresh, NOW)
    assert needs_order(cert(not_after=NOW + timedelta(days=29), has_chain=True), NOW)
    assert needs_order(fresh, NOW, before=timedelta(days=90))  # a wide renewal window
    assert not needs_order(cert(source=USER, status=PENDING), NOW)
    assert not needs_order(cert(status=MANUAL), NOW)
