//! The age rule: completed years on the evaluation date.

use crate::loan::policy::types::Date;

/// The youngest age that may borrow.
pub const ADULT: i32 = 18;

/// Age in completed years on `today`: the difference of the years, less one
/// while this year's birthday is still ahead. Someone born on 29 February
/// completes a year on 1 March in a non-leap year, since (2, 28) comes
/// before (2, 29).
pub fn completed_years(birthdate: &Date, today: &Date) -> i32 {
    let years = today.year - birthdate.year;
    if (today.month, today.day) < (birthdate.month, birthdate.day) {
        years - 1
    } else {
        years
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: i32, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    #[test]
    fn a_birthday_counts_from_its_day() {
        let today = date(2024, 6, 15);
        assert_eq!(completed_years(&date(2006, 6, 15), &today), 18);
        assert_eq!(completed_years(&date(2006, 6, 16), &today), 17);
        assert_eq!(completed_years(&date(2006, 12, 31), &today), 17);
        assert_eq!(completed_years(&date(2006, 1, 1), &today), 18);
        assert_eq!(completed_years(&date(2024, 6, 15), &today), 0);
    }

    #[test]
    fn leap_day_birthdays_turn_over_on_the_first_of_march() {
        let born = date(2004, 2, 29);
        assert_eq!(completed_years(&born, &date(2022, 2, 28)), 17);
        assert_eq!(completed_years(&born, &date(2022, 3, 1)), 18);
        assert_eq!(completed_years(&born, &date(2024, 2, 29)), 20);
    }
}
