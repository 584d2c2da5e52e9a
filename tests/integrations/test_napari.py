"""The plugin's npe2 manifest: valid, installed as the entry point napari finds, every command importable."""

import subprocess
import sys
from pathlib import Path

from npe2 import PluginManifest

from biounet.integrations.napari import MANIFEST


def test_the_installed_manifest_is_valid_and_every_command_imports():
    manifest = PluginManifest.from_distribution("biounet")
    assert manifest == PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()  # every python_name resolves
    contributions = manifest.contributions
    assert [w.display_name for w in contributions.widgets] == ["Segment with biounet", "Fine-tune biounet"]
    assert [s.display_name for s in contributions.sample_data][0] == "synthetic EM image"
    (reader,) = contributions.readers
    assert reader.accepts_directories and "*.ome.zarr" in reader.filename_patterns


def test_npe2_validate_passes():
    npe2 = Path(sys.executable).with_name("npe2")
    result = subprocess.run([str(npe2), "validate", "biounet"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "valid" in result.stdout, result.stdout + result.stderr
