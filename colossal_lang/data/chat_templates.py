"""Chat templates and the rendered segments of a conversation: which characters are assistant content.

A conversation is rendered once per assistant turn with the template itself (Jinja, through
`apply_chat_template(tokenize=False)`): rendering the turns before it with the generation prompt gives
the text in front of the answer, rendering up to and including it gives the answer and its end-of-turn.
Templates used here must be prefix-stable (rendering more turns only appends text), which holds for
llama2, llama3, chatml and SmolLM2's own template, and is checked for every conversation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

from jinja2 import TemplateError

from colossal_lang.errors import InputError

# Built-ins, written for this project from the published formats. `{{ bos_token }}`/`{{ eos_token }}`
# are the tokenizer's own; fixed strings must be tokens of the tokenizer (checked in `resolve_template`).
BUILTIN_TEMPLATES: Dict[str, str] = {
    "llama2": (
        "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}{% set turns = messages[1:] %}"
        "{% else %}{% set system = none %}{% set turns = messages %}{% endif %}"
        "{% for message in turns %}"
        "{% if message['role'] == 'user' %}{{ bos_token }}[INST] "
        "{% if loop.first and system is not none %}<<SYS>>\n{{ system }}\n<</SYS>>\n\n{% endif %}"
        "{{ message['content'] }} [/INST]"
        "{% else %} {{ message['content'] }} {{ eos_token }}{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %} {% endif %}"
    ),
    "llama3": (
        "<|begin_of_text|>"
        "{% for message in messages %}"
        "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] }}<|eot_id|>"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
    "chatml": (
        "{% for message in messages %}"
        "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
}
# The string that ends an assistant turn in each built-in (None: the tokenizer's eos_token).
BUILTIN_END_OF_TURN = {"llama2": None, "llama3": "<|eot_id|>", "chatml": "<|im_end|>"}
BUILTIN_REQUIRED_TOKENS = {
    "llama2": (),
    "llama3": ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "chatml": ("<|im_start|>", "<|im_end|>"),
}
TEMPLATE_CHOICES = ("auto", "tokenizer") + tuple(BUILTIN_TEMPLATES)


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    source: str  # Jinja text
    end_of_turn: Tuple[str, ...]  # strings that may end an assistant turn (the first found after it counts)


def resolve_template(tokenizer, choice: str) -> ChatTemplate:
    """`auto`: the tokenizer's own template, else an error asking for a built-in; a built-in by name."""
    own = getattr(tokenizer, "chat_template", None)
    if choice in ("auto", "tokenizer"):
        if not own or not isinstance(own, str):
            raise InputError("the tokenizer has no chat_template: pass --chat_template llama2, llama3 or chatml")
        specials = [token for token in tokenizer.all_special_tokens if token]
        added = [token.content for token in tokenizer.added_tokens_decoder.values() if token.special]
        return ChatTemplate("tokenizer", own, tuple(dict.fromkeys(specials + added)))
    vocab = tokenizer.get_vocab()
    lacking = [token for token in BUILTIN_REQUIRED_TOKENS[choice] if token not in vocab]
    if lacking:
        raise InputError(f"--chat_template {choice} needs token(s) {', '.join(lacking)} that the tokenizer lacks "
                         "(add them as special tokens when expanding the tokenizer)")
    end = BUILTIN_END_OF_TURN[choice] or tokenizer.eos_token
    if choice == "llama2" and (tokenizer.bos_token is None or tokenizer.eos_token is None):
        raise InputError("--chat_template llama2 needs a tokenizer with bos_token and eos_token")
    return ChatTemplate(choice, BUILTIN_TEMPLATES[choice], (end,))


@dataclass
class RenderedConversation:
    """The rendered text, the character spans that are learned, and where each assistant turn ends."""

    text: str
    learned_spans: List[Tuple[int, int]]  # each assistant content through its end-of-turn token, in order
    turn_ends: List[int]  # character end of the render up to each assistant turn (for truncation)


def render_conversation(tokenizer, template: ChatTemplate, messages: List[Dict[str, str]]) -> RenderedConversation:
    """Render `messages` and find each assistant content and its end-of-turn in the text.

    Raises ValueError when the template refuses the conversation (its own `raise_exception`) or does not
    behave as a prefix-stable template must.
    """
    def render(turns, generation_prompt):
        try:
            return tokenizer.apply_chat_template(turns, chat_template=template.source, tokenize=False,
                                                 add_generation_prompt=generation_prompt)
        except TemplateError as error:
            raise ValueError(str(error)) from None

    text = render(messages, False)
    spans, turn_ends = [], []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(messages[:index], True)
        through = render(messages[: index + 1], False)
        if not text.startswith(through) or not through.startswith(before):
            raise ValueError(f"chat template {template.name} is not prefix-stable at message {index}")
        content = message["content"]
        content_start = through.find(content, len(before))
        if content_start < 0:  # templates that write `content | trim` (Llama 3's own)
            content = content.strip()
            content_start = through.find(content, len(before))
        if content_start < 0:
            raise ValueError(f"chat template {template.name} changed the text of message {index}")
        content_end = content_start + len(content)
        found = [(through.find(end, content_end), end) for end in template.end_of_turn if end]
        found = [(position, end) for position, end in found if position >= 0]
        if not found:
            raise ValueError(f"chat template {template.name} puts no end-of-turn token after message {index}")
        end_position, end_text = min(found)
        # One span from the content through its end-of-turn token: what the template puts between them
        # (llama2's space before </s>) is also generated by the model, so it is learned too.
        spans.append((content_start, end_position + len(end_text)))
        turn_ends.append(len(through))
    return RenderedConversation(text, spans, turn_ends)
