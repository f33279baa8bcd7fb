"""The HTML mails in a real browser: every kind, rendered as the worker
renders it, shown by headless Chromium (through Playwright) at a phone's
width (375 px) and a desktop mail pane's (600 px), in light and dark, must
never scroll sideways.

The browser half of :mod:`test_messages`, kept apart like
:mod:`test_browser` because it needs Debian's ``chromium``. A control proves
the measurement: a fixed 480 px mail (the old layout's width) does scroll
at 375 px. Screenshots go to a ``mail-screenshots`` directory under pytest's
temporary path, which each failure names.
"""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext
from playwright.sync_api import expect
from playwright.sync_api import Page

from conftest import AppFactory
from flask_confirm.config import MESSAGE_KINDS
from test_messages import render_all

if t.TYPE_CHECKING:
    from flask_confirm import EmailMessage

WIDTHS = (375, 600)
#: The card's widest, in the layout's max-width.
MAX_CARD = 560
#: The page's padding on either side of the card.
GUTTER = 12

#: What sticks out: the page's scroll width, the viewport's, and every
#: element that takes room and whose box leaves the viewport.
MEASURE = """() => {
  const width = window.innerWidth;
  const outside = [];
  for (const element of document.querySelectorAll("body *")) {
    const box = element.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;  // takes no room
    if (box.right > width + 0.5 || box.left < -0.5) {
      const text = (element.textContent || "").trim().slice(0, 40);
      const tag = element.tagName.toLowerCase();
      outside.push(`<${tag}> ${box.left}..${box.right} ${text}`);
    }
  }
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: width,
    outside: outside,
  };
}"""

#: A mail as they used to be: a fixed 480 px card. It must scroll at 375 px,
#: or the measurement proves nothing.
FIXED_WIDTH_MAIL = """<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="margin:0"><table role="presentation" width="100%"><tr><td align="center">
<table role="presentation" width="480" style="width:480px"><tr><td>Confirm</td></tr>
</table></td></tr></table></body></html>"""


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory the screenshots go to, one for the module."""
    return tmp_path_factory.mktemp("mail-screenshots")


@pytest.fixture()
def messages(make_app: AppFactory) -> dict[str, EmailMessage]:
    """One mail of every kind, with real links (long, as tokens are)."""
    return render_all(make_app(CONFIRM_PASSWORD_RESET=True))


class Pages:
    """Pages of a given width and colour scheme; every request one makes is
    kept, so a test can check that a mail fetches nothing."""

    def __init__(self, new_context: t.Callable[..., BrowserContext]) -> None:
        self.new_context = new_context
        self.requests: list[str] = []

    def open(self, width: int, scheme: t.Literal["light", "dark"] = "light") -> Page:
        page = self.new_context(color_scheme=scheme).new_page()
        page.set_viewport_size({"width": width, "height": 800})
        page.on("request", lambda request: self.requests.append(request.url))
        return page


@pytest.fixture()
def pages(new_context: t.Callable[..., BrowserContext]) -> Pages:
    return Pages(new_context)


def show(page: Page, html: str, shot: Path) -> dict[str, t.Any]:
    """Render ``html`` in ``page``, screenshot it to ``shot``, and measure."""
    page.set_content(html)
    page.screenshot(path=shot, full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), shot
    return t.cast("dict[str, t.Any]", page.evaluate(MEASURE))


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_mail_fits_without_scrolling_sideways(
    messages: dict[str, EmailMessage],
    pages: Pages,
    screenshots: Path,
    kind: str,
    width: int,
    scheme: t.Literal["light", "dark"],
) -> None:
    page = pages.open(width, scheme)
    shot = screenshots / f"{kind}-{width}-{scheme}.png"
    seen = show(page, messages[kind].html, shot)
    assert seen["scrollWidth"] <= seen["innerWidth"] and seen["outside"] == [], (
        f"The {kind} mail scrolls sideways at {width} px ({scheme}): {seen}; see {shot}"
    )
    # Fluid up to its max width: the whole phone less the gutters, or 560 px.
    card = page.locator("table.fc-card")
    box = card.bounding_box()
    assert box is not None
    assert box["width"] == min(MAX_CARD, width - 2 * GUTTER), (box, shot)
    # The button (each kind has one) is on screen, in one piece.
    button = page.locator("td.fc-button a")
    expect(button).to_be_visible()
    button_box = button.bounding_box()
    assert button_box is not None and button_box["x"] + button_box["width"] <= width
    # The preheader is in the document for the mail list, never on screen.
    preheader = page.locator("body > div").first
    expect(preheader).to_be_hidden()
    assert preheader.text_content()
    # The colours follow the reader's scheme (what the <style> adds).
    background = card.evaluate("e => getComputedStyle(e).backgroundColor")
    color = card.evaluate("e => getComputedStyle(e).color")
    if scheme == "dark":
        assert (background, color) == ("rgb(22, 27, 34)", "rgb(230, 237, 243)"), shot
    else:
        assert (background, color) == ("rgb(255, 255, 255)", "rgb(31, 35, 40)"), shot
    # Nothing fetched: no remote images, fonts or styles.
    assert pages.requests == []


def test_the_measurement_sees_a_fixed_width_mail(
    pages: Pages, screenshots: Path
) -> None:
    """The control: the measurement above does catch a mail wider than the
    phone, and leaves it alone where it fits."""
    shot = screenshots / "control-480px-at-375.png"
    seen = show(pages.open(375), FIXED_WIDTH_MAIL, shot)
    assert seen["scrollWidth"] > seen["innerWidth"], f"{seen}; see {shot}"
    assert any(o.startswith("<table>") for o in seen["outside"]), f"{seen}; {shot}"
    shot = screenshots / "control-480px-at-600.png"
    seen = show(pages.open(600), FIXED_WIDTH_MAIL, shot)
    assert seen["scrollWidth"] <= seen["innerWidth"] and seen["outside"] == [], shot
