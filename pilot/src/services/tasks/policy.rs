//! Which result files may be sent (`spec/services.md` §7.4): the extension, lower-cased, must be
//! in the allow-list and not in the deny-list of source code. The daemon checks it again on
//! receipt (the reference leaves it to the sending CLI, §14 Q10).

/// Extensions a result file may have.
pub const ALLOWED: &[&str] = &[
    ".md",
    ".txt",
    ".rtf",
    ".docx",
    ".pdf",
    ".pptx",
    ".pth",
    ".pt",
    ".onnx",
    ".h5",
    ".pb",
    ".ckpt",
    ".safetensors",
    ".bin",
    ".csv",
    ".parquet",
    ".xlsx",
    ".xls",
    ".jpg",
    ".jpeg",
    ".png",
    ".svg",
    ".gif",
    ".webp",
];

/// Source-code extensions that are never sent.
pub const DENIED: &[&str] = &[
    ".go", ".py", ".js", ".ts", ".java", ".c", ".cpp", ".h", ".hpp", ".rs", ".rb", ".php",
    ".swift", ".kt", ".scala", ".sh", ".bash", ".zsh", ".ps1", ".bat", ".cmd", ".sql", ".r",
    ".lua", ".pl", ".pm", ".ex", ".exs", ".clj", ".hs", ".ml", ".fs", ".cs", ".vb", ".dart",
];

/// The extension of `name` from its last dot, lower-cased ("" without a dot).
pub fn extension(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.rfind('.')
        .map(|i| base[i..].to_ascii_lowercase())
        .unwrap_or_default()
}

/// Whether a file called `name` may be sent as a result; the reason when not.
pub fn check(name: &str) -> Result<(), String> {
    let ext = extension(name);
    if DENIED.contains(&ext.as_str()) {
        return Err(format!(
            "source code files ({ext}) cannot be sent as results"
        ));
    }
    if !ALLOWED.contains(&ext.as_str()) {
        return Err(format!(
            "file type {:?} is not allowed; allowed: {}",
            ext,
            ALLOWED.join(" ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_and_deny_lists_apply_case_insensitively() {
        assert!(check("report.MD").is_ok());
        assert!(check("dir/model.safetensors").is_ok());
        assert!(check("main.rs").unwrap_err().contains("source code"));
        assert!(check("x.R").unwrap_err().contains("source code"));
        assert!(check("archive.zip").unwrap_err().contains("not allowed"));
        assert!(check("noext").is_err());
        assert!(check(".txt").is_ok());
        assert_eq!(extension("a.b/c"), "");
    }
}
