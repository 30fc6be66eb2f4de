//! `ferry images list`: the images charts deploy, as a table, JSON or a ferry.yaml block.

use crate::cli::ListFormat;
use crate::exit::Outcome;
use crate::printer::Printer;
use ferry::images::{self, ChartImages, Need};
use std::path::PathBuf;

pub fn list(
    charts: &[PathBuf],
    values: &[PathBuf],
    format: ListFormat,
    p: &mut Printer,
) -> anyhow::Result<Outcome> {
    let found = images::chart_images(charts, values)?;
    let doc =
        serde_json::json!({ "ok": true, "images": found.images, "unresolved": found.unresolved });
    p.document(&doc)?;
    match format {
        ListFormat::Json => {
            let text = serde_json::to_string_pretty(&doc)?;
            p.data(|out| writeln!(out, "{text}"))?;
        }
        ListFormat::Spec => {
            let text = images::spec_block(&found);
            p.data(|out| out.write_all(text.as_bytes()))?;
        }
        ListFormat::Text => table(&found, p)?,
    }
    let fixed = found.images.iter().filter(|i| !i.values_key).count();
    if fixed > 0 {
        p.note(format_args!(
            "{fixed} image(s) marked * are written in the templates, not by a values key: \
             `ferry rewrite` cannot move them to a mirror"
        ))?;
    }
    for u in &found.unresolved {
        p.note(format_args!(
            "{}:{}: {} image cannot be computed offline: {}",
            u.location.file,
            u.location.line,
            u.need.as_str(),
            u.text
        ))?;
    }
    Ok(Outcome::Ok)
}

/// One image a line: need, reference (`*` when no values key writes it), first template
/// line, and why it is not required.
fn table(found: &ChartImages, p: &mut Printer) -> anyhow::Result<()> {
    let width = found
        .images
        .iter()
        .map(|i| i.reference.to_string().len() + 1)
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for i in &found.images {
        let reference = format!("{}{}", i.reference, if i.values_key { "" } else { "*" });
        let at = i
            .locations
            .first()
            .map(|l| format!("{}:{}", l.file, l.line))
            .unwrap_or_default();
        let more = match i.locations.len() {
            0 | 1 => String::new(),
            n => format!(" (+{} more)", n - 1),
        };
        let why = if i.need == Need::Required {
            String::new()
        } else {
            format!("  ({})", i.reason)
        };
        text.push_str(&format!(
            "{:<11}  {reference:<width$}  {at}{more}{why}\n",
            i.need.as_str()
        ));
    }
    let count = |n: Need| found.images.iter().filter(|i| i.need == n).count();
    text.push_str(&format!(
        "{} images: {} required, {} undecided, {} conditional\n",
        found.images.len(),
        count(Need::Required),
        count(Need::Undecided),
        count(Need::Conditional)
    ));
    p.data(|out| out.write_all(text.as_bytes()))?;
    Ok(())
}
