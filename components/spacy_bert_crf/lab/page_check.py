"""Use the server's page in headless Chromium as a person would: type, press the button,
read the entity marks the browser drew, and take a screenshot (Selenium + chromium-driver)."""

import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from ..formats import PathLike
from .visualize import BrowserNotFound, find_chromium

# The entities' text as the page shows it, without the label inside each mark.
SHOWN_TEXT = """
const shown = document.getElementById("entities").cloneNode(true);
shown.querySelectorAll("mark.entity > span").forEach((label) => label.remove());
return shown.textContent;
"""


def tag_in_browser(
    url: str, text: str, screenshot: Optional[PathLike] = None, timeout: float = 60
) -> Dict[str, object]:
    """Open the page at `url`, tag `text` with its button, and return what the browser shows:
    the text without labels, and each mark's text, label and hover title."""
    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        raise BrowserNotFound("No chromedriver on PATH (Debian's chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = find_chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        # --no-sandbox: Chromium refuses to start as root (as in containers) with its sandbox on.
        for argument in ("--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}"):
            options.add_argument(argument)
        options.add_argument("--window-size=1100,700")
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            driver.get(url)
            box = driver.find_element(By.ID, "text")
            box.clear()
            box.send_keys(text)
            driver.find_element(By.ID, "tag").click()
            status = driver.find_element(By.ID, "status")
            WebDriverWait(driver, timeout).until(lambda _: status.text and status.text != "tagging…")
            marks: List[Dict[str, str]] = [
                {
                    "text": driver.execute_script("return arguments[0].firstChild.textContent", mark),
                    "label": mark.find_element(By.TAG_NAME, "span").text,
                    "title": mark.get_attribute("title"),
                }
                for mark in driver.find_elements(By.CSS_SELECTOR, "#entities mark.entity")
            ]
            if screenshot is not None:
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(screenshot))
            return {"status": status.text, "shown_text": driver.execute_script(SHOWN_TEXT), "marks": marks}
        finally:
            driver.quit()
