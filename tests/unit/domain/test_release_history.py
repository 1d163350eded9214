"""Release numbers as users see them: what a rollback picks, what builds stay."""

from __future__ import annotations

import pytest

from dockyard.domain.errors import InvalidInput, NotFound
from dockyard.domain.releases import (
    Release,
    ReleaseImageGone,
    builds_to_keep,
    rollback_target,
)

DIGEST = "sha256:" + "b" * 64


def release(
    number: int,
    status: str = "retired",
    *,
    image: str | None = None,
    source: str | None = None,
    git_ref: str | None = None,
) -> Release:
    return Release(
        id=100 + number,  # the store's ids are not the numbers
        app_id=1,
        image=image or f"reg.io/web@sha256:{number:064x}",
        source=source or "reg.io/web:v1",
        config_version=number,
        services=(),
        status=status,
        number=number,
        git_ref=git_ref,
    )


def newest_first(*releases: Release) -> list[Release]:
    return sorted(releases, key=lambda r: -r.number)


def test_source_text_for_images_and_commits() -> None:
    assert release(1).source_text() == "reg.io/web:v1"
    commit = "0123456789abcdef0123456789abcdef01234567"
    assert release(1, source=f"git:{commit}").source_text() == "git:0123456"
    pushed = release(1, source=f"git:{commit}", git_ref="main")
    assert pushed.source_text() == "git:0123456 (main)"


def test_digest_of_a_pinned_image_and_of_a_build() -> None:
    assert release(1, image=f"reg.io/web@{DIGEST}").digest() == DIGEST
    assert release(1, image=DIGEST).digest() == DIGEST


def test_default_target_is_the_live_release_before_the_current() -> None:
    history = newest_first(release(1), release(2, "failed"), release(3, "active"))
    assert rollback_target("web", history, 103, None).number == 1


def test_default_target_after_a_rollback_is_the_one_before_it() -> None:
    # 3 brought back 1; rolling back again goes to 2, as Heroku does.
    history = newest_first(release(1), release(2), release(3, "active"))
    assert rollback_target("web", history, 103, None).number == 2


def test_a_named_release() -> None:
    history = newest_first(release(1), release(2), release(3, "active"))
    assert rollback_target("web", history, 103, 1).number == 1


@pytest.mark.parametrize(
    ("history", "current", "number", "error", "words"),
    [
        ([], None, None, InvalidInput, "has no release"),
        ([release(1, "active")], 101, None, InvalidInput, "only one release"),
        ([release(1, "active")], 101, 1, InvalidInput, "only one release"),
        ([release(2, "failed"), release(1, "active")], 101, 2, InvalidInput, "only one release"),
        ([release(2, "active"), release(1)], 102, 7, NotFound, "has no release 7"),
        ([release(2, "active"), release(1)], 102, 2, InvalidInput, "is the current release"),
        (
            [release(3, "active"), release(2, "failed"), release(1)],
            103,
            2,
            InvalidInput,
            "never served (failed)",
        ),
    ],
)
def test_what_cannot_be_rolled_back_to(
    history: list[Release],
    current: int | None,
    number: int | None,
    error: type[Exception],
    words: str,
) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        rollback_target("web", history, current, number)


def test_no_release_before_the_current_one() -> None:
    # The current release is the first: 2 went live later but is not current.
    history = newest_first(release(1, "active"), release(2))
    with pytest.raises(InvalidInput, match="no release before the current one"):
        rollback_target("web", history, 101, None)


def test_image_gone_names_the_release() -> None:
    error = ReleaseImageGone("web", release(4), "the registry reg.io no longer has it")
    assert "release 4" in error.message and "nothing was changed" in error.message


def built(number: int, image: str) -> Release:
    return release(number, image=image, source=f"git:{number:040x}")


def test_the_builds_of_the_last_ten_releases_stay() -> None:
    history = newest_first(*(built(n, f"sha256:{n:064x}") for n in range(1, 16)))
    kept = builds_to_keep(history, current_id=115)
    assert kept == {100 + n for n in range(6, 16)}


def test_an_old_build_that_a_recent_restart_runs_stays() -> None:
    old = built(1, "sha256:" + "1" * 64)
    restarts = [built(n, old.image) for n in range(2, 14)]  # tagged or not, same image
    others = [built(n, f"sha256:{n:064x}") for n in range(14, 20)]
    kept = builds_to_keep(newest_first(old, *restarts, *others), current_id=119)
    assert 101 in kept


def test_the_current_release_stays_even_when_old() -> None:
    history = newest_first(*(built(n, f"sha256:{n:064x}") for n in range(1, 16)))
    assert 101 in builds_to_keep(history, current_id=101)


def test_image_deploys_keep_no_build() -> None:
    assert builds_to_keep(newest_first(release(1), release(2)), current_id=102) == set()


def test_failed_releases_do_not_count_among_the_ten() -> None:
    good = [built(n, f"sha256:{n:064x}") for n in range(1, 11)]
    failed = [
        release(n, "failed", image=f"sha256:{n:064x}", source=f"git:{n:040x}")
        for n in range(11, 14)
    ]
    kept = builds_to_keep(newest_first(*good, *failed), current_id=110)
    assert kept == {100 + n for n in range(1, 11)}
