"""What every expansion returns and reports, and the protection loop both tokenizer families share.

An expansion is planned from the wanted pieces and a set of blocked tokens; protection re-plans with
the new tokens that fired on the reference text blocked, until none fires. Blocking a token rejects
every wanted piece whose construction needs it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple


@dataclass
class ExpansionPlan:
    """New tokens in id order (from `first_new_id`), and what happened to each wanted piece."""

    first_new_id: int
    new_tokens: List[str] = field(default_factory=list)
    added: List[str] = field(default_factory=list)  # wanted pieces that are now tokens
    intermediates: List[str] = field(default_factory=list)  # tokens added only so a wanted piece is reachable
    already_present: List[str] = field(default_factory=list)
    rejected: Dict[str, str] = field(default_factory=dict)  # piece -> reason
    merges: List[Tuple[str, str]] = field(default_factory=list)  # byte-level BPE: appended merges, in rank order
    scores: Dict[str, float] = field(default_factory=dict)  # SentencePiece: score of each new piece
    protected_dropped: int = 0
    protection_rounds: int = 0

    def summary(self) -> str:
        reasons = Counter(self.rejected.values())
        lines = [
            f"added {len(self.added)} pieces (+{len(self.intermediates)} intermediate tokens for reachability), "
            f"{len(self.new_tokens)} new tokens in all",
            f"already present {len(self.already_present)}",
            f"rejected {len(self.rejected)}" + "".join(f"\n  {count:6d}  {reason}" for reason, count in reasons.most_common()),
        ]
        if self.protection_rounds:
            lines.append(f"protection: {self.protected_dropped} pieces dropped in {self.protection_rounds} rounds "
                         "because they fired on the reference text")
        return "\n".join(lines)


PROTECTED_REASON = "would change the reference text's tokenization"


def protect(
    plan_with_blocked: Callable[[Set[str]], ExpansionPlan],
    fired_tokens: Callable[[ExpansionPlan], Set[str]],
    max_rounds: int = 50,
    progress: Optional[Callable[[str], None]] = print,
) -> ExpansionPlan:
    """Re-plan with the new tokens that fire on the reference text blocked, until none fires."""
    blocked: Set[str] = set()
    for round_number in range(1, max_rounds + 1):
        plan = plan_with_blocked(blocked)
        fired = fired_tokens(plan)
        if progress:
            progress(f"protection round {round_number}: {len(plan.new_tokens)} new tokens, {len(fired)} fire on the reference text")
        if not fired:
            plan.protected_dropped = sum(1 for reason in plan.rejected.values() if reason == PROTECTED_REASON)
            plan.protection_rounds = round_number
            return plan
        blocked |= fired
    raise RuntimeError(f"protection did not converge in {max_rounds} rounds")


def dedupe(pieces: Sequence[str]) -> List[str]:
    """Pieces in first-seen order, without repeats or empty strings."""
    seen: Set[str] = set()
    unique = []
    for piece in pieces:
        if piece and piece not in seen:
            seen.add(piece)
            unique.append(piece)
    return unique
