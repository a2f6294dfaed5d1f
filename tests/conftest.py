"""Test-wide settings. One torch thread: the tests use tiny models, where thread start-up costs more than it
saves, and a second thread competing with another process on a 2-core machine ran 10-80x slower."""

import os

import pytest
import torch

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Back to one thread after every test: a CLI under test (``--threads``) must not change the next ones."""
    yield
    torch.set_num_threads(1)
