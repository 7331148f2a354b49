"""Train a small classifier (logistic regression on polynomial features) with plain Python.

Writes a checkpoint per epoch to model/ and resumes from the last one if it is there, so an
interrupted run that is restarted with its artifacts continues where it stopped. Each epoch's
loss and accuracy go to the file $DSTACK_METRICS names, one JSON line an epoch, for
`dstack metrics` and the dashboard's charts.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
from pathlib import Path

import prepare


def features(x: float, y: float) -> list[float]:
    return [1.0, x, y, x * x, y * y, x * y, x**3, y**3]


def load(path: Path) -> list[tuple[list[float], int]]:
    with open(path) as f:
        return [
            (features(float(r["x"]), float(r["y"])), int(r["label"])) for r in csv.DictReader(f)
        ]


def predict(weights: list[float], xs: list[float]) -> float:
    z = sum(w * x for w, x in zip(weights, xs, strict=True))
    return 1 / (1 + math.exp(-max(-30.0, min(30.0, z))))


def write_metrics(step: int, **values: float) -> None:
    """Append one point to $DSTACK_METRICS (set by dstack; outside dstack, nothing is written)."""
    path = os.environ.get("DSTACK_METRICS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--model", type=Path, default=Path("model"))
    args = parser.parse_args()

    if not (args.data / "train.csv").exists():
        print(f"no data in {args.data}/: generating it")
        rng = random.Random(7)
        args.data.mkdir(parents=True, exist_ok=True)
        rows = prepare.moons(2000, 0.2, rng)
        with open(args.data / "train.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["x", "y", "label"])
            writer.writerows(rows)
    data = load(args.data / "train.csv")

    args.model.mkdir(parents=True, exist_ok=True)
    checkpoint = args.model / "checkpoint.json"
    weights, start = [0.0] * len(data[0][0]), 0
    if checkpoint.exists():
        saved = json.loads(checkpoint.read_text())
        weights, start = saved["weights"], saved["epoch"]
        print(f"resuming from epoch {start}")
    for epoch in range(start + 1, args.epochs + 1):
        for xs, label in data:
            error = predict(weights, xs) - label
            weights = [
                w - args.lr * error * x / len(data) * 10 for w, x in zip(weights, xs, strict=True)
            ]
        loss = -sum(
            math.log(max(1e-12, p if label else 1 - p))
            for xs, label in data
            for p in [predict(weights, xs)]
        ) / len(data)
        accuracy = sum((predict(weights, xs) > 0.5) == bool(label) for xs, label in data) / len(
            data
        )
        checkpoint.write_text(json.dumps({"epoch": epoch, "weights": weights}))
        write_metrics(epoch, loss=loss, accuracy=accuracy)
        print(f"epoch {epoch}/{args.epochs}: loss {loss:.4f}, accuracy {accuracy:.3f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
