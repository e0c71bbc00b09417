"""Reading the web page's HTML in tests: elements with their attributes and text (html.parser)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})


@dataclass
class Element:
    """One element: its tag, attributes and all the text inside it."""

    tag: str
    attrs: dict[str, str]
    text: str = ""
    parents: list[Element] = field(default_factory=list, repr=False)

    def has_class(self, name: str) -> bool:
        """Whether ``name`` is one of the element's classes."""
        return name in self.attrs.get("class", "").split()


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.open: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, parents=list(self.open))
        self.elements.append(element)
        if tag not in VOID:
            self.open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, {k: v or "" for k, v in attrs}, parents=list(self.open)))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.open) - 1, -1, -1):
            if self.open[i].tag == tag:
                del self.open[i:]
                return

    def handle_data(self, data: str) -> None:
        for element in self.open:
            element.text += data


def parse(html: str) -> list[Element]:
    """Every element of ``html``, in document order."""
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return collector.elements


def find(html: str, tag: str | None = None, **attrs: str) -> list[Element]:
    """The elements of ``html`` with that tag (any: None) and those attribute values
    (``class_="bar"``: has the class; ``data_id=...``: attribute ``data-id``)."""
    found = []
    for element in parse(html):
        if tag is not None and element.tag != tag:
            continue
        ok = True
        for name, value in attrs.items():
            if name == "class_":
                ok = ok and element.has_class(value)
            else:
                ok = ok and element.attrs.get(name.replace("_", "-")) == value
        if ok:
            found.append(element)
    return found


def bars(html: str, histogram: str) -> dict[str, float]:
    """{outcome: drawn height} of the bars of the histogram ``histogram`` (counts, quasi)."""
    figure_id = f"histogram-{histogram}"
    return {
        bar.attrs["data-outcome"]: float(bar.attrs["height"])
        for bar in parse(html)
        if bar.tag == "rect" and bar.has_class("bar") and any(p.attrs.get("id") == figure_id for p in bar.parents)
    }


def table(html: str, table_id: str) -> list[list[str]]:
    """The rows of the table ``table_id`` as lists of their cells' text (th and td, stripped)."""
    elements = parse(html)
    rows = [e for e in elements if e.tag == "tr" and any(p.attrs.get("id") == table_id for p in e.parents)]
    return [[" ".join(c.text.split()) for c in elements if c.tag in ("td", "th") and row in c.parents] for row in rows]
