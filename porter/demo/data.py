"""Synthetic, deterministic datasets for the demo and the tests.

Small arithmetic and word tasks that a 156k-parameter model visibly learns: the same
seed gives the same files, byte for byte, on every machine.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

SAMPLES = 128
WORDS = [
    "apple",
    "river",
    "cloud",
    "stone",
    "tiger",
    "maple",
    "ocean",
    "lemon",
    "piano",
    "candle",
    "forest",
    "rocket",
    "garden",
    "silver",
    "winter",
    "yellow",
]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@dataclass(frozen=True)
class Task:
    instruction: str
    input: str
    output: str
    wrong_output: str  # a plausible wrong answer, for preference data


def _task(rng: random.Random) -> Task:
    kind = rng.randrange(5)
    if kind == 0:
        a, b = rng.randrange(10), rng.randrange(10)
        return Task(
            "Add the two numbers.", f"{a} and {b}", f"{a} plus {b} is {a + b}.", f"{a} plus {b} is {a + b + 1}."
        )
    if kind == 1:
        word = rng.choice(WORDS)
        return Task("Reverse the letters of the word.", word, word[::-1], word[1:] + word[0])
    if kind == 2:
        word = rng.choice(WORDS)
        return Task("Write the word in capital letters.", word, word.upper(), word.capitalize())
    if kind == 3:
        start = rng.randrange(6)
        stop = start + rng.randrange(2, 5)
        counted = ", ".join(str(n) for n in range(start, stop + 1))
        return Task("Count from the first number to the second.", f"{start} to {stop}", counted, counted[::-1])
    digit = rng.randrange(10)
    return Task("Spell the digit as a word.", str(digit), NUMBER_WORDS[digit], NUMBER_WORDS[(digit + 1) % 10])


def tasks(seed: int = 0, count: int = SAMPLES) -> List[Task]:
    rng = random.Random(seed)
    return [_task(rng) for _ in range(count)]


def prompt_of(task: Task) -> str:
    return f"{task.instruction} {task.input}"


def instruct_records(items: List[Task]) -> List[Dict[str, str]]:
    return [{"instruction": t.instruction, "input": t.input, "output": t.output} for t in items]


def chat_records(items: List[Task]) -> List[Dict[str, object]]:
    return [
        {
            "messages": [
                {"role": "system", "content": "You answer in one short line."},
                {"role": "user", "content": prompt_of(t)},
                {"role": "assistant", "content": t.output},
            ]
        }
        for t in items
    ]


def preference_records(items: List[Task]) -> List[Dict[str, str]]:
    return [{"prompt": prompt_of(t), "chosen": t.output, "rejected": t.wrong_output} for t in items]


def preference_message_records(items: List[Task]) -> List[Dict[str, object]]:
    """Preference pairs as torchtune's preference_dataset reads them: message lists."""

    def conversation(task: Task, answer: str) -> List[Dict[str, str]]:
        return [{"role": "user", "content": prompt_of(task)}, {"role": "assistant", "content": answer}]

    return [{"chosen": conversation(t, t.output), "rejected": conversation(t, t.wrong_output)} for t in items]


def prompt_records(items: List[Task]) -> List[Dict[str, str]]:
    return [{"prompt": prompt_of(t), "answer": t.output} for t in items]


def reasoning_records(items: List[Task]) -> List[Dict[str, str]]:
    """gsm8k-shaped problems, for GRPO: a question, and a worked answer ending `#### ANSWER`."""
    return [{"question": prompt_of(t), "answer": f"{t.output} #### {t.output}"} for t in items]


def corpus(items: List[Task]) -> str:
    """All text the tokenizer should encode compactly."""
    lines = []
    for t in items:
        lines += [t.instruction, t.input, t.output, t.wrong_output, prompt_of(t)]
    lines.append("You answer in one short line.")
    return "\n".join(lines)


def write_jsonl(path: Path, records: List[Dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(record, sort_keys=True) + "\n" for record in records))


def write_json(path: Path, records: List[Dict[str, object]]) -> None:
    path.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
