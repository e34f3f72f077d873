"""pe-audit's HTML report in a real browser: headless Chromium driven by
Debian's chromium-driver through python3-selenium (run by
tests/cli/report.sh, which skips when they are missing).

    report_test.py HOSTILE.html BENIGN.html SCREENSHOT.png

HOSTILE.html is the report of a store whose file, folder and class names
are hostile (tests/browser/make_hostile.py), BENIGN.html the same pixels
under plain names. Checks, as the browser built the pages:

- every section is there with its heading, and the composites and
  recurring sections show rows with the matched region outlined;
- every <img> has decoded (complete, natural width above 0);
- the hostile names are on the page as literal text, and add no element:
  per tag, the hostile page has as many elements as the benign one; no
  element carries a class from the names ("pwn"), no event handler
  attribute exists, the one <script> is the JSON data block, and no alert
  opened;
- the data block parses and holds the hostile names as they were;
- the browser's console logged nothing at all (a CSP violation, a failed
  image, a script error would each log an error);
and writes a screenshot of the hostile page to SCREENSHOT.png.
"""
import json
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service

hostile, benign, shot = sys.argv[1:4]
t0 = time.time()

opts = webdriver.ChromeOptions()
for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--disable-extensions", "--no-first-run", "--window-size=1280,2400",
          "--user-data-dir=" + os.path.join(os.path.dirname(os.path.abspath(shot)), "chrome-profile")):
    opts.add_argument(a)
opts.binary_location = next(p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser")
                            if os.path.exists(p))
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
driver.set_page_load_timeout(30)

COUNT_TAGS = """
const n = {};
for (const e of document.querySelectorAll('*')) n[e.localName] = (n[e.localName] || 0) + 1;
return n;
"""


def load(path):
    driver.get("file://" + os.path.abspath(path))
    for _ in range(100):
        if driver.execute_script("return document.readyState") == "complete":
            break
        time.sleep(0.05)
    try:
        driver.switch_to.alert
        raise AssertionError("an alert opened on " + path)
    except NoAlertPresentException:
        pass
    logs = driver.get_log("browser")
    assert not logs, "console of %s: %s" % (path, logs[:3])


def check_hostile():
    d = driver
    for sec in ("summary", "scores", "duplicates", "composites", "recurring", "seams", "against",
                "size", "quality"):
        n = d.execute_script("const s = document.getElementById(arguments[0]);"
                             "return s && s.localName === 'section' ? s.querySelectorAll('h2').length : -1",
                             sec)
        assert n == 1, "section %s: %d headings" % (sec, n)
    rows = d.execute_script("return document.querySelectorAll('#composites .row').length")
    boxes = d.execute_script("return document.querySelectorAll('#composites .row svg rect.box').length")
    assert rows > 0 and boxes >= rows, "composites: %d rows, %d outlined regions" % (rows, boxes)
    parts = d.execute_script("return document.querySelectorAll('#recurring .card.part img').length")
    assert parts > 0, "no recurring part shown"
    hist = d.execute_script("return document.querySelectorAll('#scores figure.hist svg').length")
    assert hist >= 10, "%d histograms" % hist
    cells = d.execute_script("return document.querySelectorAll('#summary tbody tr').length")
    assert cells >= 14, "%d summary rows" % cells

    imgs = d.execute_script("""
        return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.src.slice(0, 22)]);""")
    assert len(imgs) > 10, "%d images" % len(imgs)
    bad = [i for i in imgs if not (i[0] and i[1] > 0 and i[2] == "data:image/png;base64,")]
    assert not bad, "%d of %d images did not decode: %s" % (len(bad), len(imgs), bad[:3])

    text = d.execute_script("return document.body.innerText")
    for name in ("<script>alert(1)</script>", "<img src=x onerror=alert(2)>",
                 "\"q'&amp;<b class=pwn>b", "\\xff\\xfe<u class=pwn>", "dark \\xc0\\xaf<h1>.png",
                 "\"cls\" & 'x' <i class=pwn>", "dup <a href=x>1.png", "dup2 \\xe9&lt;2.png"):
        assert name in text, "%r not shown as text" % name
    assert "tab\\there <!-- c -->" in d.execute_script("return document.body.textContent")
    intruders = d.execute_script("return document.querySelectorAll('.pwn, [onerror], [onload], u, i, b, s, iframe, object, embed, form, base, link').length")
    assert intruders == 0, "%d elements from the names" % intruders
    handlers = d.execute_script("""
        let n = 0;
        for (const e of document.querySelectorAll('*'))
            for (const a of e.attributes) if (a.name.startsWith('on')) n++;
        return n;""")
    assert handlers == 0, "%d event handler attributes" % handlers
    scripts = d.execute_script(
        "return Array.from(document.scripts).map(s => [s.type, s.id])")
    assert scripts == [["application/json", "pe-audit-data"]], scripts
    data = json.loads(d.execute_script("return document.getElementById('pe-audit-data').textContent"))
    srcs = [s for im in data["images"] for s in im["sources"]]
    assert any("<script>alert(1)</script>" in s for s in srcs), "data block lacks the hostile source"
    assert data["summary"]["type"] == "summary"
    return d.execute_script(COUNT_TAGS), len(imgs)


try:
    load(hostile)
    counts, nimg = check_hostile()
    height = min(driver.execute_script("return document.documentElement.scrollHeight"), 12000)
    driver.set_window_size(1280, height)
    assert driver.save_screenshot(shot), "no screenshot"
    load(benign)
    bcounts = driver.execute_script(COUNT_TAGS)
    assert counts == bcounts, "elements per tag differ: %s" % {
        k: (counts.get(k), bcounts.get(k))
        for k in set(counts) | set(bcounts) if counts.get(k) != bcounts.get(k)}
finally:
    driver.quit()
print("browser: %d elements, %d images decoded, screenshot %s (%d bytes), %.1f s"
      % (sum(counts.values()), nimg, shot, os.path.getsize(shot), time.time() - t0), file=sys.stderr)
