"""Make a small synthetic classification data set (two noisy moons) as CSV files in data/."""

from __future__ import annotations

import argparse
import csv
import math
import random
from pathlib import Path


def moons(n: int, noise: float, rng: random.Random) -> list[tuple[float, float, int]]:
    rows = []
    for i in range(n):
        label = i % 2
        angle = rng.random() * math.pi
        x = math.cos(angle) if label == 0 else 1 - math.cos(angle)
        y = math.sin(angle) if label == 0 else 0.5 - math.sin(angle)
        rows.append((x + rng.gauss(0, noise), y + rng.gauss(0, noise), label))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("data"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = moons(args.samples, args.noise, rng)
    split = int(len(rows) * 0.8)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train.csv", rows[:split]), ("test.csv", rows[split:])):
        with open(args.out / name, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["x", "y", "label"])
            writer.writerows(part)
        print(f"wrote {len(part)} rows to {args.out / name}")


if __name__ == "__main__":
    main()
