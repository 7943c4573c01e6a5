"""The on-disk formats: save a small tuned lens and a small probe, then show what the folders hold."""

# --8<-- [start:setup]
import tempfile
from pathlib import Path

import lensbox
from lensbox.lenses import TunedLens
from lensbox.probes import InputProbe

model = lensbox.load_model()
root = Path(tempfile.mkdtemp(prefix="lensbox-formats-"))
# --8<-- [end:setup]

# --8<-- [start:lens]
lens = TunedLens.identity(model, sites="embed,0-2")   # an untrained lens: small and quick to save
lens_dir = lens.save(root / "my-lens")
# --8<-- [end:lens]

# --8<-- [start:probe]
text = " ".join(["The quick brown fox jumps over the lazy dog while the cat sleeps by the warm fire."] * 40)
probe = InputProbe("embed,0", offsets=[0, -1]).fit(model, text, window=64, max_tokens=512, progress=False)
probe_dir = probe.save(root / "my-probe")
# --8<-- [end:probe]

if __name__ == "__main__":
    from _support import artifact_json, listing

    print(listing(lens_dir))
    print(artifact_json(lens_dir / "config.json"))
    print(listing(probe_dir))
    print(artifact_json(probe_dir / "probe.json"))
