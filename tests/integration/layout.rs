//! What the reader sees: the HTML part laid out by a real browser (headless Chromium,
//! installed from Debian by `.ci/install chromium` when missing) at phone and desktop widths,
//! and the plain-text part read as text. Screenshots for a person to look at are written
//! under `target/tmp/layout/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use unicode_width::UnicodeWidthStr;

use crate::harness::{Project, parse};

const WIDTHS: [u32; 4] = [320, 375, 600, 800];

/// Chromium, installed first when missing (as `smtp-sink` is).
fn chromium() -> PathBuf {
    crate::harness::installed(
        "chromium",
        &["/usr/bin/chromium", "/usr/lib/chromium/chromium"],
    )
}

/// Measures the page once it has loaded and posts the findings to the frame around it:
/// elements whose box passes the viewport's edges, elements whose content is wider than
/// they are (clipped, or spilling over), images wider than their column, a page that
/// scrolls sideways, and text whose colour contrasts with its background less than WCAG's
/// AA asks (4.5:1, or 3:1 for large text), in whichever colour scheme the browser prefers.
/// Elements with no box (`display:none`, the preheader) are not laid out.
const PROBE: &str = r#"<script>
window.addEventListener('load', () => {
  const vw = document.documentElement.clientWidth;
  const problems = [];
  const name = e => {
    const text = (e.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 50);
    return `<${e.tagName.toLowerCase()}${e.className ? ' class="' + e.className + '"' : ''}> "${text}"`;
  };
  for (const e of document.body.querySelectorAll('*')) {
    if (e.getClientRects().length === 0) continue;
    const r = e.getBoundingClientRect();
    if (r.right > vw + 0.5 || r.left < -0.5) {
      problems.push(`past the viewport (${Math.round(r.left)}..${Math.round(r.right)} of ${vw}): ${name(e)}`);
    }
    if (e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1) {
      problems.push(`content ${e.scrollWidth} px wide in a box of ${e.clientWidth} (overflow ${getComputedStyle(e).overflowX}): ${name(e)}`);
    }
    if (e.tagName === 'IMG') {
      const column = e.parentElement.getBoundingClientRect();
      if (r.width > column.width + 0.5 || !e.complete || e.naturalWidth === 0) {
        problems.push(`image ${Math.round(r.width)} px in a column of ${Math.round(column.width)} (loaded: ${e.naturalWidth > 0}): ${e.getAttribute('src')}`);
      }
    }
  }
  const rgba = c => (c.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = e => {
    for (let n = e; n; n = n.parentElement) {
      const c = rgba(getComputedStyle(n).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c;
    }
    return matchMedia('(prefers-color-scheme: dark)').matches ? [18, 18, 18] : [255, 255, 255];
  };
  for (const e of document.body.querySelectorAll('*')) {
    if (e.getClientRects().length === 0) continue;
    const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const s = getComputedStyle(e);
    const [a, b] = [lum(rgba(s.color)), lum(background(e))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const large = parseFloat(s.fontSize) >= 24 || (parseFloat(s.fontSize) >= 18.66 && parseInt(s.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) {
      problems.push(`contrast ${ratio.toFixed(2)}:1 (${s.color} on ${background(e)}): ${name(e)}`);
    }
  }
  const page = document.documentElement.scrollWidth;
  if (page > vw) problems.push(`the page scrolls sideways: ${page} px in ${vw}`);
  parent.postMessage(JSON.stringify({ viewport: vw, problems }), '*');
});
</script>"#;

/// The page in a frame `width` px wide: Chromium's windows are at least 500 px wide, and a
/// frame's width is its document's viewport (media queries included). What the page posts
/// lands in `#layout-result`, which `--dump-dom` prints.
fn frame(page: &str, width: u32) -> String {
    format!(
        r#"<!DOCTYPE html><html><body style="margin:0">
<iframe src="{page}" style="width:{width}px; height:4000px; border:0; display:block"></iframe>
<script>
window.addEventListener('message', e => {{
  const out = document.createElement('pre');
  out.id = 'layout-result';
  out.textContent = e.data;
  document.body.appendChild(out);
}});
</script></body></html>"#
    )
}

/// A photo of known size, served from disk, in place of the article images' web URLs.
const PHOTO: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="800"><rect width="1200" height="800" fill="#7a9cc6"/><circle cx="600" cy="400" r="300" fill="#f2d16b"/></svg>"##;

struct Laid {
    viewport: u32,
    problems: Vec<String>,
}

fn run_chromium(args: &[String]) -> String {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            "--mute-audio",
        ])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromium");
    // A safety bound: a page this small lays out in about a second.
    let deadline = std::time::Instant::now() + Duration::from_mins(2);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "chromium did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Lays `page` out at `width` px, in the dark colour scheme when `dark`: the probe's
/// findings, and a screenshot beside it.
fn lay_out(page: &Path, width: u32, dark: bool, shot: &Path) -> Laid {
    let name = page.file_name().expect("name").to_string_lossy();
    let framed = page.with_file_name(format!("frame-{width}-{name}"));
    std::fs::write(&framed, frame(&name, width)).expect("frame");
    let url = format!("file://{}", framed.display());
    let window = width.max(500);
    let scheme = if dark {
        "--force-dark-mode"
    } else {
        "--no-default-browser-check"
    };
    let dom = run_chromium(&[
        format!("--window-size={window},1600"),
        scheme.into(),
        "--virtual-time-budget=5000".into(),
        "--dump-dom".into(),
        url.clone(),
    ]);
    run_chromium(&[
        format!("--window-size={window},4000"),
        scheme.into(),
        format!("--screenshot={}", shot.display()),
        url,
    ]);
    let json = dom
        .split("<pre id=\"layout-result\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("no layout result in the page at {width} px"))
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let value: serde_json::Value = serde_json::from_str(&json).expect("layout json");
    Laid {
        viewport: u32::try_from(value["viewport"].as_u64().expect("viewport")).expect("px"),
        problems: value["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .map(|p| p.as_str().unwrap_or_default().to_string())
            .collect(),
    }
}

/// The HTML and text parts of the preview for ada@example.org.
fn parts(p: &Project) -> (String, String) {
    let run = p.run(&["preview", "--to", "ada@example.org", "--out", "pv"]);
    run.expect_code(0);
    let eml = run.stdout().lines().next().expect("eml").to_string();
    let data = std::fs::read(p.path(&eml)).expect("eml");
    let msg = parse(&data);
    (
        msg.body_html(0).expect("html part").into_owned(),
        msg.body_text(0).expect("text part").into_owned(),
    )
}

/// Lays out the HTML part at every width and checks it; checks the text part.
fn check_edition(p: &Project, name: &str) {
    let (html, text) = parts(p);
    check_html(name, &html);
    check_text(name, &text);
}

/// Lays out a page at every width, light and dark, and checks what the probe finds.
pub(crate) fn check_html(name: &str, html: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("layout");
    std::fs::create_dir_all(&dir).expect("layout dir");
    let photo = dir.join("photo.svg");
    std::fs::write(&photo, PHOTO).expect("photo");
    let page = dir.join(format!("{name}.html"));
    let local = html
        .split("src=\"https://")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part.to_string()
            } else {
                // The image's own URL up to its closing quote becomes the local photo.
                let rest = part.split_once('"').map_or("", |(_, r)| r);
                format!("src=\"file://{}\"{rest}", photo.display())
            }
        })
        .collect::<String>()
        .replace("</body>", &format!("{PROBE}</body>"));
    std::fs::write(&page, local).expect("page");
    let mut failures = Vec::new();
    let runs = WIDTHS
        .iter()
        .map(|w| (*w, false))
        .chain([(375, true), (800, true)]);
    for (width, dark) in runs {
        let scheme = if dark { "-dark" } else { "" };
        let shot = dir.join(format!("{name}-{width}{scheme}.png"));
        let laid = lay_out(&page, width, dark, &shot);
        assert_eq!(laid.viewport, width, "the browser's viewport is {width} px");
        assert!(shot.exists(), "screenshot {}", shot.display());
        failures.extend(
            laid.problems
                .iter()
                .map(|p| format!("{width} px{scheme}: {p}")),
        );
    }
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

/// The text part reads as text: no Markdown left, no line wider than 78 columns but a URL
/// alone on its line.
fn check_text(name: &str, text: &str) {
    for line in text.lines() {
        let trimmed = line.trim();
        assert!(!line.contains("**"), "{name}: ** in {line:?}");
        assert!(!line.contains("]("), "{name}: ]( in {line:?}");
        assert!(
            !trimmed.starts_with('#'),
            "{name}: a heading mark in {line:?}"
        );
        assert!(
            !(trimmed.starts_with('|') && trimmed.ends_with('|') && trimmed.len() > 1),
            "{name}: a table row in {line:?}"
        );
        let lone_url = !trimmed.contains(' ')
            && (trimmed.starts_with("https://") || trimmed.starts_with("http://"));
        assert!(
            line.width() <= 78 || lone_url,
            "{name}: {} columns: {line:?}",
            line.width()
        );
    }
}

#[test]
fn the_bundled_example_fits_every_width_and_its_text_reads_as_text() {
    let p = Project::new();
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("example/articles"))
        .expect("example articles")
    {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        p.write(
            &format!("articles/{name}"),
            &std::fs::read_to_string(&path).expect("article"),
        );
    }
    check_edition(&p, "example");
}

/// Ten articles with what breaks layouts: wide photos, long words and URLs, a table, body
/// headings, CJK and emoji titles.
#[test]
fn a_ten_article_edition_with_tables_long_words_and_cjk_fits_every_width() {
    let p = Project::new();
    std::fs::remove_dir_all(p.path("articles")).expect("clear articles");
    let titles = [
        "Ferry timetable changes for the winter season on every crossing",
        "港口の新しいフェリーが到着しました",
        "🌊 Storm watch: the sea wall holds 🌊",
        "Donaudampfschifffahrtsgesellschaftskapitänsmützenabzeichenhersteller visits",
        "Council budget: the numbers line by line",
        "市場の冬の営業時間 — 새로운 시장 시간",
        "The library reopens after repairs to the roof and the reading room",
        "Lighthouse museum: a night tour",
        "Festival plans, with a long address: https://harbour.example/festival/2026/programme/full-schedule-and-map",
        "Élan, naïveté and the café on the quay",
    ];
    let long_url = format!("https://harbour.example/{}", "archive/".repeat(14));
    let word = "Hafenrundfahrtsgesellschaftsvorstandsvorsitzenderstellvertreter";
    for (i, title) in titles.iter().enumerate() {
        let body = format!(
            "## What changes\n\nThe **council** met on *Tuesday*. See [the minutes](https://harbour.example/minutes/{i}) \
             and {long_url} for the record; {word} spoke.\n\n\
             | Crossing | Leaves | Arrives | Notes |\n| --- | --- | --- | --- |\n\
             | Island | 07:10 | 07:55 | {word} |\n| Mainland | 08:40 | 09:25 | weekdays only |\n\n\
             - first point, with a [link](https://harbour.example/a)\n- second point\n\n\
             > A reader writes: 港口の新しいフェリーは毎朝七時に出発します。港口の新しいフェリーは毎朝七時に出発します。\n\n\
             ![A second photo](https://harbour.example/second-{i}.jpg)\n"
        );
        p.write(
            &format!("articles/a{i:02}.md"),
            &format!(
                "+++\ntitle = {title:?}\ndate = 2026-11-2{}\nlink = \"https://harbour.example/n/{i}\"\n\
                 summary = \"A summary with a long word, {word}, and more.\"\nselected = true\n\n\
                 [image]\nurl = \"https://harbour.example/photo-{i}.jpg\"\nalt = \"A photo for {i}\"\n\
                 caption = \"The quay at dawn, seen from the ferry.\"\ncredit = \"A. Photographer\"\nwidth = 1200\n+++\n{body}",
                i % 7
            ),
        );
    }
    check_edition(&p, "ten-articles");
}

/// The traps the built-in template avoids, as a user's own template: a 600 px card and
/// pale grey dates. The browser finds both (so the checks above can fail), and `check`
/// warns of the width with the file and line.
#[test]
fn a_fixed_width_template_is_caught_by_the_browser_and_by_check() {
    let p = Project::new();
    let fixed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/digest.html"),
    )
    .expect("template")
    .replace(
        "style=\"width:100%; max-width:600px; background-color:#ffffff;",
        "style=\"width:600px; max-width:100%; background-color:#ffffff;",
    );
    assert!(fixed.contains("width:600px"), "the card's style changed");
    let fixed = fixed.replace(
        "color:#595959; text-transform:uppercase;",
        "color:#cccccc; text-transform:uppercase;",
    );
    p.write("templates/digest.html", &fixed);
    let line = fixed
        .lines()
        .position(|l| l.contains("width:600px"))
        .expect("line")
        + 1;
    let run = p.run(&["check"]);
    assert!(
        run.stderr().contains(&format!(
            "templates/digest.html:{line}: width:600px is wider than a 320 px phone screen"
        )),
        "{}",
        run.stderr()
    );

    let (html, _) = parts(&p);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("layout");
    std::fs::create_dir_all(&dir).expect("layout dir");
    let page = dir.join("fixed-width.html");
    std::fs::write(&page, html.replace("</body>", &format!("{PROBE}</body>"))).expect("page");
    let laid = lay_out(&page, 800, false, &dir.join("fixed-width-800.png"));
    assert!(
        laid.problems.iter().any(|p| p.contains("contrast")),
        "{:?}",
        laid.problems
    );
    for width in [320, 375] {
        let laid = lay_out(
            &page,
            width,
            false,
            &dir.join(format!("fixed-width-{width}.png")),
        );
        assert!(
            laid.problems
                .iter()
                .any(|p| p.contains("past the viewport")),
            "{width} px: {:?}",
            laid.problems
        );
    }
}
