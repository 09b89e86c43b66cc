//! A list a page shows, carried inside the page as plain text (see
//! [`crate::pages::activity`]): a first line `rows` and a free word (what the page needs
//! besides the rows, such as the next page's key), then one line per row with its fields
//! separated by tabs; or a first line `error` and the error's words. Decoding it takes a few
//! lines of WASM, where a derived `Deserialize` would bring serde's decoding into it.

/// Writes `rows` (or the error) with the word `extra`. Control characters (tabs and line
/// breaks among them) in a value are written as spaces: they would end its field or its row.
pub fn write(
    f: &mut impl std::fmt::Write,
    extra: &str,
    rows: Result<&Vec<Vec<&str>>, &str>,
) -> std::fmt::Result {
    let plain = |f: &mut dyn std::fmt::Write, text: &str| {
        text.chars()
            .try_for_each(|c| f.write_char(if c.is_control() { ' ' } else { c }))
    };
    match rows {
        Ok(rows) => {
            f.write_str("rows ")?;
            plain(f, extra)?;
            for row in rows {
                for (i, field) in row.iter().enumerate() {
                    f.write_char(if i == 0 { '\n' } else { '\t' })?;
                    plain(f, field)?;
                }
            }
            Ok(())
        }
        Err(error) => {
            f.write_str("error\n")?;
            plain(f, error)
        }
    }
}

/// The word and the rows (each one's fields) [`write`] wrote, or the error; `None` when `text`
/// is not such a list.
#[allow(clippy::type_complexity)]
pub fn read(text: &str) -> Option<(String, Result<Vec<Vec<String>>, String>)> {
    if let Some(error) = text.strip_prefix("error\n") {
        return Some((String::new(), Err(error.to_string())));
    }
    let mut lines = text.split('\n');
    let extra = lines.next()?.strip_prefix("rows ")?.to_string();
    let rows = lines
        .map(|line| line.split('\t').map(str::to_string).collect())
        .collect();
    Some((extra, Ok(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_errors_read_back_as_written() {
        let rows = vec![vec!["a\tb", "c"], vec!["d\ne", ""]];
        let mut text = String::new();
        write(&mut text, "42", Ok(&rows)).unwrap();
        let (extra, read_rows) = read(&text).unwrap();
        assert_eq!(extra, "42");
        assert_eq!(
            read_rows.unwrap(),
            vec![
                vec!["a b".to_string(), "c".into()],
                vec!["d e".into(), String::new()]
            ]
        );
        let mut text = String::new();
        write(&mut text, "", Err("No.\nReally")).unwrap();
        assert_eq!(read(&text).unwrap().1, Err("No. Really".to_string()));
        assert!(read("something else").is_none());
    }
}
