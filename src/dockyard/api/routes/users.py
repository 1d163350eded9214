from __future__ import annotations

from fastapi import APIRouter

from dockyard.api.deps import CurrentUser, PlatformDep
from dockyard.api.schemas import UserCreated, UserIn, UserOut
from dockyard.services import accounts

router = APIRouter(tags=["users"])


@router.get("/me")
def me(user: CurrentUser) -> UserOut:
    return UserOut.of(user)


@router.get("/users")
def list_users(platform: PlatformDep, user: CurrentUser) -> list[UserOut]:
    return [UserOut.of(u) for u in accounts.list_users(platform, user)]


@router.post("/users", status_code=201)
def create_user(body: UserIn, platform: PlatformDep, user: CurrentUser) -> UserCreated:
    created, token = accounts.create_user(platform, user, body.name, is_admin=body.admin)
    return UserCreated(**UserOut.of(created).model_dump(), token=token)
