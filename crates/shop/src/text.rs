//! Names that people read (users, products, coupons) show what they say: no control
//! characters, no bidirectional overrides that reorder what follows (a name ending in
//! U+202E turns the rest of a line around), no invisible characters that make two
//! different names look the same.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Whether `c` would not show as itself: a control character, or a format character
/// (Unicode category Cf). Cf holds every bidirectional control (U+061C, U+200E,
/// U+200F, U+202A–U+202E, U+2066–U+2069) and the invisible ones (U+00AD, U+200B–U+200D,
/// U+2060–U+2064, U+FEFF, tag characters, ...).
pub fn is_hidden(c: char) -> bool {
    c.is_control() || c.general_category() == GeneralCategory::Format
}

/// `name` trimmed, when it is 1..=`max` characters and none is hidden; otherwise the
/// message to answer with.
pub fn visible_name(name: &str, max: usize) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > max || name.chars().any(is_hidden) {
        return Err(format!(
            "name must be 1..={max} characters without control, direction-changing or \
             invisible characters"
        ));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_controls_and_invisible_characters_are_hidden() {
        let bidi = ['\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}'];
        let isolates = ['\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'];
        let marks = ['\u{200E}', '\u{200F}', '\u{061C}'];
        let invisible = [
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{2064}',
            '\u{E0041}',
        ];
        let controls = ['\0', '\n', '\u{7F}', '\u{85}'];
        for c in bidi
            .into_iter()
            .chain(isolates)
            .chain(marks)
            .chain(invisible)
            .chain(controls)
        {
            assert!(is_hidden(c), "U+{:04X}", c as u32);
            assert!(
                visible_name(&format!("kim{c}lee"), 100).is_err(),
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn ordinary_names_in_any_script_pass() {
        for name in ["kim", "김철수", "Zoë", "مرحبا", "שלום", "a b", "👩‍💻"] {
            // (the emoji's zero-width joiner is a format character: refused)
            let ok = visible_name(name, 100);
            if name.contains('\u{200D}') {
                assert!(ok.is_err(), "{name}");
            } else {
                assert_eq!(ok.as_deref(), Ok(name), "{name}");
            }
        }
        assert_eq!(visible_name("  kim  ", 100).as_deref(), Ok("kim"));
        assert!(visible_name("   ", 100).is_err());
        assert!(visible_name(&"a".repeat(101), 100).is_err());
        assert!(visible_name(&"가".repeat(100), 100).is_ok());
    }
}
