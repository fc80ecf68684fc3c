"""Pure helpers on mail data: headers, MIME structure, delivery status notifications."""
