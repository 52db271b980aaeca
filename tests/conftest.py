from pathlib import Path

import pytest
import torch

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Generated datasets go to a throwaway cache, never the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DENETDM_CACHE", str(tmp_path_factory.mktemp("cache")))
    mp.delenv("DENETDM_DATA", raising=False)
    yield
    mp.undo()


@pytest.fixture(scope="session")
def mnist_root():
    """The data root holding the real MNIST files (mnist/*.gz)."""
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST not found at {SHARED_MNIST}")
    return str(SHARED_MNIST.parent)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine they spin."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
