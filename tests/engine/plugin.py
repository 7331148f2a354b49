"""The plugin that runs ``pulumi.dynamic`` resources for the engine the tiers build: the Pulumi
CLI's distribution ships it as a small script next to ``pulumi``; this writes the equivalent
for this interpreter (without the cloudless hook, which the provider process does not need)."""

from __future__ import annotations

import sys
from pathlib import Path


def write_dynamic_plugin(folder: Path) -> Path:
    """``folder/pulumi-resource-pulumi-python``, executable; put ``folder`` on PATH."""
    script = folder / "pulumi-resource-pulumi-python"
    script.write_text(
        "#!/bin/sh\n# runs pulumi.dynamic resources, as the CLI distribution's script does\n"
        f'unset DSTACK_TEST_CLOUDLESS\nexec "{sys.executable}" -u -m pulumi.dynamic "$@"\n'
    )
    script.chmod(0o755)
    return script
