"""Every relative link in the repository's Markdown files resolves to a file or directory inside
the repository, and the README links every page under docs/ (the operator's pages).
Usage: md-links.py SOURCE_DIR"""
import os
import re
import subprocess
import sys

LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFDEF = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


CODE_PATH = re.compile(r"`((?:\.\.?/)*[\w.-]+(?:/[\w.-]+)*\.md)`")


def links(text):
    text = FENCE.sub("", text)
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK.findall(text) + REFDEF.findall(text)


def code_paths(text):
    """Paths to Markdown files written as code (`docs/fleetd.md`, `../x/DESIGN.md`): read
    from the file's directory or the repository's root, as the pages write them."""
    return [p for p in CODE_PATH.findall(FENCE.sub("", text)) if "/" in p]


def check(root):
    root = os.path.realpath(root)
    files = subprocess.run(["git", "-C", root, "ls-files", "--cached", "--others",
                            "--exclude-standard", "*.md"],
                           check=True, capture_output=True, text=True).stdout.split()
    bad = []
    for rel in files:
        path = os.path.join(root, rel)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for target in links(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
                continue
            where = target.split("#", 1)[0].split("?", 1)[0]
            dest = os.path.realpath(os.path.join(os.path.dirname(path), where))
            if not (dest == root or dest.startswith(root + os.sep)):
                bad.append(f"{rel}: link '{target}' leaves the repository")
            elif not os.path.exists(dest):
                bad.append(f"{rel}: link '{target}' names no file in the repository")
        for target in code_paths(text):
            near = os.path.realpath(os.path.join(os.path.dirname(path), target))
            top = os.path.realpath(os.path.join(root, target))
            if not any((d.startswith(root + os.sep) and os.path.exists(d)) for d in (near, top)):
                bad.append(f"{rel}: path '{target}' names no file inside the repository")
    with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
        readme = {os.path.normpath(t.split("#", 1)[0]) for t in links(f.read())}
    for page in sorted(os.listdir(os.path.join(root, "docs"))):
        if page.endswith(".md") and os.path.join("docs", page) not in readme:
            bad.append(f"README.md: no link to the operator page 'docs/{page}'")
    return bad


if __name__ == "__main__":
    problems = check(sys.argv[1])
    for p in problems:
        print(p, file=sys.stderr)
    print(f"md-links: {len(problems)} problem(s)")
    sys.exit(1 if problems else 0)
