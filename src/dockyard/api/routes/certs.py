"""HTTPS: ``/apps/{handle}/certs`` and the app's force-https (``/apps/{handle}/https``)."""

from __future__ import annotations

from fastapi import APIRouter

from dockyard.api.deps import CurrentUser, PlatformDep
from dockyard.api.errors import responses
from dockyard.api.schemas import (
    CertificateIn,
    CertificateOut,
    CertificatesAdded,
    HandlePath,
    HttpsIn,
    HttpsOut,
)
from dockyard.services import apps, certificates

router = APIRouter(tags=["certificates"])


@router.get("/apps/{handle}/certs", responses=responses(401, 404, 422))
def list_certs(
    handle: HandlePath, platform: PlatformDep, user: CurrentUser
) -> list[CertificateOut]:
    return [
        CertificateOut(
            name=c.name,
            source=c.source,
            status=c.status,
            issuer=c.issuer,
            not_after=c.not_after,
            last_error=c.last_error,
            next_attempt_at=c.next_attempt_at,
        )
        for c in certificates.list_certs(platform, user, handle)
    ]


@router.post("/apps/{handle}/certs", status_code=201, responses=responses(401, 404, 413, 422))
def add_cert(
    handle: HandlePath, body: CertificateIn, platform: PlatformDep, user: CurrentUser
) -> CertificatesAdded:
    names = certificates.add_user_certificate(
        platform, user, handle, body.certificate, body.private_key, body.name
    )
    return CertificatesAdded(app=handle, names=names)


@router.get("/apps/{handle}/https", responses=responses(401, 404, 422))
def show_https(handle: HandlePath, platform: PlatformDep, user: CurrentUser) -> HttpsOut:
    app = apps.find(platform, user, handle)
    return HttpsOut(app=app.handle, force_https=certificates.force_https(platform, app))


@router.patch("/apps/{handle}/https", responses=responses(401, 404, 422))
def update_https(
    handle: HandlePath, body: HttpsIn, platform: PlatformDep, user: CurrentUser
) -> HttpsOut:
    on = certificates.set_force_https(platform, user, handle, body.force_https)
    return HttpsOut(app=handle, force_https=on)
