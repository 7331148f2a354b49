"""Evaluate a trained checkpoint on the held-out data and write a report to report/."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from train import load, predict


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--model", type=Path, default=Path("model"))
    parser.add_argument("--out", type=Path, default=Path("report"))
    args = parser.parse_args()
    weights = json.loads((args.model / "checkpoint.json").read_text())["weights"]
    data = load(args.data / "test.csv")
    accuracy = sum((predict(weights, xs) > 0.5) == bool(label) for xs, label in data) / len(data)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps({"accuracy": accuracy, "samples": len(data)}))
    print(f"test accuracy: {accuracy:.3f} on {len(data)} samples")


if __name__ == "__main__":
    main()
