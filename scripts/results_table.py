"""Print the README's results table (Markdown) from ``python -m nmnp compare`` JSON files."""

import json
import sys


def rows(path):
    comparison = json.load(open(path))
    for name in comparison["strategies"]:
        r = comparison["results"][name]
        report, summary, storage = r["report"], r["summary"], r["storage"]
        yield (
            report["config"]["benchmark"], name, summary["average_accuracy"], summary["forgetting"],
            storage["bytes_per_task"], storage["shared_learned_bytes"], sum(report["train_seconds"]),
            report["samples_per_second"],
        )


def main(paths):
    print("| benchmark | strategy | average accuracy | forgetting | bytes stored per task | shared learned bytes | training s (5 tasks) | samples/s |")
    print("|---|---|---|---|---|---|---|---|")
    for path in paths:
        for b, name, acc, forget, per_task, shared, seconds, rate in rows(path):
            print(f"| {b} | {name} | {acc:.4f} | {forget:.4f} | {per_task:,} | {shared:,} | {seconds:.1f} | {rate:,.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
