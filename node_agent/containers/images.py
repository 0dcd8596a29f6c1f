"""What the agent knows about images: which it pulled itself, and when each last started a
container. The engine notes both (``DockerEngine.pull``, ``create``, ``create_job``); the
image pruner (containers/prune.py) keeps them in a file so that a restarted agent still
knows what it pulled, and removes only those images (and its own dependency images)."""

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from common.logs import fields

log = logging.getLogger(__name__)


@dataclass
class ImageInfo:
    """A local image: its id, its names (``repo:tag``) and labels."""

    id: str
    tags: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


def image_ref(name: str) -> str:
    """``name`` as Docker lists it among an image's tags: ``:latest`` when no tag is given."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last or "@" in last else f"{name}:latest"


@dataclass
class ImageUse:
    # image ref -> when this agent pulled it (wall clock, seconds)
    pulled: dict[str, float] = field(default_factory=dict)
    # image ref -> when it last started a container
    used: dict[str, float] = field(default_factory=dict)

    def note_pull(self, image: str) -> None:
        ref = image_ref(image)
        self.pulled[ref] = self.used[ref] = time.time()

    def note_use(self, image: str) -> None:
        self.used[image_ref(image)] = time.time()

    def last_used(self, ref: str, default: float) -> float:
        return self.used.get(ref, default)

    def forget(self, ref: str) -> None:
        self.pulled.pop(ref, None)
        self.used.pop(ref, None)

    def load(self, path: Path) -> None:
        """Merge what ``path`` holds (newest time wins); a missing or bad file is no record."""
        try:
            saved = json.loads(path.read_text())
            pulled, used = dict(saved["pulled"]), dict(saved["used"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("images.record_unreadable", extra=fields(path=str(path), error=repr(err)))
            return
        for mine, theirs in ((self.pulled, pulled), (self.used, used)):
            for ref, at in theirs.items():
                if isinstance(ref, str) and isinstance(at, int | float):
                    mine[ref] = max(mine.get(ref, 0.0), float(at))

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".part")
        tmp.write_text(json.dumps({"pulled": self.pulled, "used": self.used}))
        tmp.replace(path)
