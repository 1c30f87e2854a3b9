"""Debian's Chromium driven through chromium-driver (Selenium) for the privacy center's tests.

The browser trusts exactly the gateway's certificate (its public key pinned with
--ignore-certificate-errors-spki-list), keeps nothing between runs (a fresh profile), saves
downloads into a directory of the test's, and runs axe-core (installed by ./run, pinned, into
.cache/npm: MDMBUS_AXE_JS) on a page."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

__all__ = ["Browser", "spki_pin", "By"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def spki_pin(cert_path: Path) -> str:
    """The base64 SHA-256 of a certificate's public key, as Chromium's pin list takes it."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class Browser:
    def __init__(self, gateway_cert: Path, downloads: Path, profile: Path) -> None:
        self.downloads = downloads
        downloads.mkdir(parents=True, exist_ok=True)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--disable-gpu", "--no-first-run", "--window-size=1280,1000",
                    f"--user-data-dir={profile}",
                    f"--ignore-certificate-errors-spki-list={spki_pin(gateway_cert)}"):
            options.add_argument(arg)
        options.add_experimental_option("prefs", {
            "download.default_directory": str(downloads), "download.prompt_for_download": False,
            "safebrowsing.enabled": False})
        self.driver: WebDriver = webdriver.Chrome(options=options,
                                                  service=Service(CHROMEDRIVER))
        self.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {
            "behavior": "allow", "downloadPath": str(downloads)})

    def close(self) -> None:
        self.driver.quit()

    # ---------------------------------------------------------------- reading the page

    def get(self, url: str) -> None:
        self.driver.get(url)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, condition: str, timeout_s: float, what: str, *args: Any) -> Any:
        """Polls a JavaScript expression (``return ...``) until it is truthy."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.js(condition, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; the "
                                     f"page at {self.driver.current_url} reads:\n"
                                     f"{self.text()[:2000]}")
            time.sleep(0.1)

    def text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def visible(self, element_id: str) -> bool:
        return bool(self.js("const e = document.getElementById(arguments[0]);"
                            "return !!e && e.getClientRects().length > 0;", element_id))

    def shown_values(self) -> dict[str, tuple[str, str]]:
        """data-key -> (data-value, visible text) of every value the signed-in page shows."""
        pairs = self.js(
            "return [...document.querySelectorAll('#center [data-key][data-value]')]"
            ".filter(e => !e.closest('[hidden]'))"
            ".map(e => [e.dataset.key, e.dataset.value, e.textContent]);")
        out: dict[str, tuple[str, str]] = {}
        for key, value, text in pairs:
            assert key not in out, f"{key} shown twice"
            out[key] = (value, text)
        return out

    def signed_in(self, timeout_s: float = 30) -> None:
        self.wait("return !document.getElementById('center').hidden"
                  " && !document.getElementById('center').hasAttribute('aria-busy')"
                  " && document.querySelectorAll('#holdings-table tbody tr').length > 0",
                  timeout_s, "the signed-in page")

    def downloaded(self, name: str, timeout_s: float = 30) -> bytes:
        path = self.downloads / name
        deadline = time.monotonic() + timeout_s
        while not path.exists() or any(self.downloads.glob("*.crdownload")):
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} was not downloaded in {timeout_s} s "
                                     f"(found {os.listdir(self.downloads)})")
            time.sleep(0.1)
        return path.read_bytes()

    def axe(self, axe_js: str) -> list[dict]:
        """The serious and critical violations axe-core finds on the page as it is."""
        self.js(axe_js)
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
            " nodes: v.nodes.map(n => n.target.join(' '))}))))"
            ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));")
        return [v for v in result if v["impact"] in ("serious", "critical")]

    def screenshot(self, path: Path, element_id: str | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if element_id is None:
            self.driver.save_screenshot(str(path))
        else:
            self.driver.find_element(By.ID, element_id).screenshot(str(path))
