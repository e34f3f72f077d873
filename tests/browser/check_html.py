"""Checks pe-audit's HTML report without a browser (tests/cli/report.sh).

    check_html.py HOSTILE.html BENIGN.html SUMMARY.json

HOSTILE.html is the report of a store whose file, folder and class names
are hostile (tests/browser/make_hostile.py), BENIGN.html the report of the
same pixels under plain names, SUMMARY.json the hostile audit's --json
summary line. Checks, with Python's own HTML parser:

- the Content-Security-Policy meta element, exactly, in <head> before the
  title, the style and anything from the data;
- only the elements and attributes the report uses: no event-handler
  attribute, every <img> a data:image/png URI, every link a fragment, one
  <script> element and it is the application/json data block;
- the hostile names add nothing: the two reports have the same elements,
  attributes and classes in the same order, and the same number of '<'
  characters (every '<' is markup), so no '<' comes from the data;
- the hostile names are in the text, literally (backslash escapes for tabs
  and bytes that are not UTF-8);
- the data block holds no '<' (so neither "</script" nor "<!--"), parses
  as JSON, its summary equals --json's, and it lists the hostile sources.

Exit status 0 when every check holds; the first failed check's message
otherwise.
"""
import json
import re
import sys
from html.parser import HTMLParser

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
ALLOWED = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "p", "q",
    "nav", "a", "main", "section", "table", "thead", "tbody", "tr", "th", "td", "div", "figure",
    "figcaption", "img", "svg", "rect", "line", "text", "span", "code", "ol", "li", "script",
}


class Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.shape = []   # (tag, attribute names, class) of each start tag
        self.text = []
        self.tags = []
        self.csp_at = None
        self.scripts = []
        self.in_script = False
        self.script_text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self.shape.append((tag, tuple(sorted(a)), a.get("class")))
        if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy":
            self.csp_at = (len(self.tags), a.get("content"))
        if tag == "script":
            self.scripts.append(a)
            self.in_script = True
        for k, v in attrs:
            assert not k.startswith("on"), "event handler attribute %r on <%s>" % (k, tag)
            if tag == "img" and k == "src":
                assert v.startswith("data:image/png;base64,"), "img src %r" % v[:60]
            if tag == "a" and k == "href":
                assert v.startswith("#"), "link %r" % v
            if k in ("src", "href", "style") and tag not in ("img", "a", "div"):
                raise AssertionError("%s on <%s>" % (k, tag))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        if tag == "script":
            self.in_script = False

    def handle_data(self, data):
        if self.in_script:
            self.script_text.append(data)
        else:
            self.text.append(data)


def parse(path):
    raw = open(path, "rb").read()
    html = raw.decode("utf-8")  # the report is UTF-8 whatever the names were
    p = Page()
    p.feed(html)
    p.close()
    return html, p


hostile_path, benign_path, summary_path = sys.argv[1:4]
html, page = parse(hostile_path)
bhtml, bpage = parse(benign_path)

# the policy, first thing in <head>
assert page.csp_at is not None, "no CSP meta element"
assert page.csp_at[1] == CSP, "CSP is %r" % page.csp_at[1]
assert page.tags.index("meta") < page.tags.index("title"), "CSP after the title"
assert page.csp_at[0] <= page.tags.index("title"), "CSP meta after the title"
assert html.index(CSP) < html.index("<title>"), "CSP after the title"

# elements and attributes
unknown = set(page.tags) - ALLOWED
assert not unknown, "unexpected elements %s" % sorted(unknown)
assert len(page.scripts) == 1 and page.scripts[0].get("type") == "application/json", page.scripts
assert page.tags.count("img") > 10, "few images: %d" % page.tags.count("img")
for sec in ("summary", "scores", "duplicates", "composites", "recurring", "seams", "against",
            "size", "quality"):
    assert ('section', ('id',), None) in page.shape and 'id="%s"' % sec in html, "no section " + sec

# hostile names add nothing
assert page.shape == bpage.shape, next(
    ("element %d: %r vs %r" % (i, a, b)) for i, (a, b) in enumerate(zip(page.shape, bpage.shape))
    if a != b) if len(page.shape) == len(bpage.shape) else "%d elements vs %d" % (
        len(page.shape), len(bpage.shape))
assert html.count("<") == bhtml.count("<"), "'<' count %d vs %d" % (html.count("<"), bhtml.count("<"))
assert "pwn" not in "".join(str(s) for s in page.shape), "a hostile class reached the markup"

# ... and show as literal text
text = "".join(page.text)
for name in ("<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "\"q'&amp;<b class=pwn>b",
             "tab\\there <!-- c -->", "\\xff\\xfe<u class=pwn>", "dark \\xc0\\xaf<h1>.png", "\"cls\" & 'x' <i class=pwn>",
             "dup <a href=x>1.png", "dup2 \\xe9&lt;2.png"):
    assert name in text, "%r not in the page's text" % name

# the data block
m = re.search(r'<script type="application/json" id="pe-audit-data">(.*?)</script>', html, re.S)
assert m, "no data block"
block = m.group(1)
assert "<" not in block and ">" not in block, "raw < or > in the data block"
assert "".join(page.script_text) == block
data = json.loads(block)
summary = json.loads(open(summary_path).read().splitlines()[-1])
assert data["summary"] == summary, "data block summary differs from --json's"
sources = [s for im in data["images"] for s in im["sources"]]
assert any("<script>alert(1)</script>" in s for s in sources), "hostile source missing from the data"
assert any("\ufffd\ufffd<u class=pwn>" in s for s in sources), "invalid UTF-8 not as U+FFFD"
classes = {im.get("class") for im in data["images"]}
assert "\"cls\" & 'x' <i class=pwn>" in classes, classes
print("report HTML: %d elements, %d images, %d bytes; CSP, escaping and data block ok"
      % (len(page.tags), page.tags.count("img"), len(html)), file=sys.stderr)
