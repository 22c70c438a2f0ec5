"""Headless Chromium for tests: Debian's binary (no browser download), a new empty profile, and a
page that fails its test on an uncaught error or a Content-Security-Policy violation."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext, ConsoleMessage, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying hosts this closed network refuses.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


class PageProblems:
    """Uncaught errors and CSP violations seen on a page."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def on_console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Uncaught" in message.text:
            self.messages.append(message.text)

    def on_page_error(self, error: Exception) -> None:
        self.messages.append(f"page error: {error}")


@contextlib.asynccontextmanager
async def chromium(profile: Path, **options: Any) -> AsyncIterator[BrowserContext]:
    """A browser context on a fresh profile; ``options`` go to launch_persistent_context."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, **options)
        try:
            yield context
        finally:
            await context.close()


@contextlib.asynccontextmanager
async def strict_page(context: BrowserContext) -> AsyncIterator[Page]:
    """A page whose uncaught errors and CSP violations fail the test when it closes."""
    problems = PageProblems()
    page = await context.new_page()
    page.on("console", problems.on_console)
    page.on("pageerror", problems.on_page_error)
    yield page
    assert problems.messages == []


# How long a console page may take to connect and draw (QEMU under TCG on a busy machine).
CONNECT_TIMEOUT_MS = 30_000

# Mean and variance of the canvas's luminance, computed in the page (no image library needed).
CANVAS_STATS = """() => {
  const canvas = document.querySelector('#screen canvas');
  const ctx = canvas.getContext('2d');
  const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
  let sum = 0, sumSq = 0, lit = 0;
  const n = data.length / 4;
  for (let i = 0; i < data.length; i += 4) {
    const y = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
    sum += y; sumSq += y * y; if (y > 40) lit++;
  }
  const mean = sum / n;
  return { width: canvas.width, height: canvas.height, mean, variance: sumSq / n - mean * mean,
           lit };
}"""
