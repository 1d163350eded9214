from __future__ import annotations

from fastapi import APIRouter

from dockyard.api.deps import CurrentUser, PlatformDep
from dockyard.api.errors import responses
from dockyard.api.schemas import UserCreated, UserIn, UserOut
from dockyard.services import accounts

router = APIRouter(tags=["users"])


@router.get("/me", responses=responses(401))
def me(user: CurrentUser) -> UserOut:
    return UserOut.of(user)


@router.get("/users", responses=responses(401, 403))
def list_users(platform: PlatformDep, user: CurrentUser) -> list[UserOut]:
    return [UserOut.of(u) for u in accounts.list_users(platform, user)]


@router.post("/users", status_code=201, responses=responses(401, 403, 409, 413, 422))
def create_user(body: UserIn, platform: PlatformDep, user: CurrentUser) -> UserCreated:
    created, token = accounts.create_user(platform, user, body.name, is_admin=body.admin)
    return UserCreated(**UserOut.of(created).model_dump(), token=token)
