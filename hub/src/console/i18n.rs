//! The console's two languages (English, Dutch): every label is a [`Msg`] with both
//! texts, so a label missing in one language does not compile. The language is the
//! `till360_lang` cookie (the switch in the header), else the browser's
//! `Accept-Language`, else English.

use axum::http::{header, HeaderMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Nl,
}

pub const LANG_COOKIE: &str = "till360_lang";

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Nl];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Nl => "nl",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        let primary = code.split(['-', '_']).next()?.trim();
        Lang::ALL
            .into_iter()
            .find(|l| l.code().eq_ignore_ascii_case(primary))
    }

    /// The cookie's language, else the best of `Accept-Language` we speak, else English.
    pub fn of_request(headers: &HeaderMap) -> Lang {
        if let Some(lang) = super::session::cookie(headers, LANG_COOKIE).and_then(Lang::from_code) {
            return lang;
        }
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(accept_language)
            .unwrap_or(Lang::En)
    }
}

/// The language of `Accept-Language` with the highest weight that we speak (ties: the
/// first listed).
pub fn accept_language(value: &str) -> Option<Lang> {
    let mut best: Option<(f32, Lang)> = None;
    for item in value.split(',') {
        let mut parts = item.split(';');
        let Some(lang) = parts.next().and_then(|tag| Lang::from_code(tag.trim())) else {
            continue;
        };
        let weight = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if weight > 0.0 && best.is_none_or(|(w, _)| weight > w) {
            best = Some((weight, lang));
        }
    }
    best.map(|(_, lang)| lang)
}

macro_rules! messages {
    ($($name:ident => $en:literal, $nl:literal;)*) => {
        /// A label of the console.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Msg { $($name,)* }

        impl Msg {
            pub const ALL: &'static [Msg] = &[$(Msg::$name,)*];

            pub fn text(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $((Msg::$name, Lang::En) => $en, (Msg::$name, Lang::Nl) => $nl,)*
                }
            }
        }
    };
}

messages! {
    AppName => "Till360 console", "Till360-console";
    SkipToContent => "Skip to content", "Naar de inhoud";
    Overview => "Overview", "Overzicht";
    Customers => "Customers", "Klanten";
    Campaigns => "Campaigns", "Campagnes";
    Segments => "Segments", "Segmenten";
    Tills => "Tills", "Kassa's";
    SignIn => "Sign in", "Inloggen";
    SignOut => "Sign out", "Uitloggen";
    Token => "API token", "API-token";
    SignInHelp => "Sign in with the hub's API token (hub.toml api_token). Everyone with the token has the same rights; roles are a later step.", "Log in met het API-token van de hub (hub.toml api_token). Iedereen met het token heeft dezelfde rechten; rollen volgen later.";
    SignInFailed => "That token is not right.", "Dat token klopt niet.";
    SignInExpired => "The sign-in form expired; try again.", "Het inlogformulier is verlopen; probeer het opnieuw.";
    NoTokenNotice => "No api_token is set: the console is open to anyone who can reach this address (loopback only).", "Er is geen api_token ingesteld: de console is open voor iedereen die dit adres bereikt (alleen loopback).";
    RolesLater => "One role for now: everyone signed in may read, change consents, export and erase. Roles are a later step.", "Voorlopig één rol: iedereen die is ingelogd mag lezen, toestemmingen wijzigen, exporteren en wissen. Rollen volgen later.";
    Language => "Language", "Taal";
    Profiles => "Profiles", "Profielen";
    Transactions => "Receipts", "Bonnen";
    Revenue => "Revenue", "Omzet";
    NewProfiles => "New profiles", "Nieuwe profielen";
    PerDay => "Activity per day, last 30 days (UTC)", "Activiteit per dag, laatste 30 dagen (UTC)";
    ActiveCampaigns => "Active campaigns", "Actieve campagnes";
    IssuedToday => "Issued today", "Vandaag uitgegeven";
    RedeemedToday => "Redeemed today", "Vandaag ingewisseld";
    Syncing => "Syncing", "Synchroniseert";
    Behind => "Behind", "Achter";
    Silent => "Silent", "Stil";
    Offline => "Offline", "Offline";
    Blocked => "Blocked identifiers", "Geblokkeerde kenmerken";
    Suspicious => "Suspicious cards", "Verdachte kaarten";
    None_ => "None", "Geen";
    Search => "Search", "Zoeken";
    SearchHelp => "Card, customer number, e-mail, phone or the start of a name", "Kaart, klantnummer, e-mail, telefoon of het begin van een naam";
    NoResults => "No customer matches.", "Geen klant gevonden.";
    Name => "Name", "Naam";
    Card => "Card", "Kaart";
    Cards => "Cards", "Kaarten";
    CustomerNo => "Customer number", "Klantnummer";
    Email => "E-mail", "E-mail";
    Phone => "Phone", "Telefoon";
    OnlineAccounts => "Online accounts", "Online accounts";
    LastVisit => "Last visit", "Laatste bezoek";
    Identity => "Identity", "Identiteit";
    IdentityHelp => "Every identifier of this customer, when it joined the profile and from which source (a later one merged into the profile).", "Elk kenmerk van deze klant, wanneer het aan het profiel werd gekoppeld en uit welke bron (een later kenmerk is samengevoegd).";
    Kind => "Kind", "Soort";
    Value => "Value", "Waarde";
    Source => "Source", "Bron";
    Joined => "Joined", "Gekoppeld";
    Merged => "merged", "samengevoegd";
    PersonalData => "Personal data", "Persoonsgegevens";
    FirstName => "First name", "Voornaam";
    LastName => "Last name", "Achternaam";
    BirthDate => "Birth date", "Geboortedatum";
    PostalCode => "Postal code", "Postcode";
    Consents => "Consents", "Toestemmingen";
    Purpose => "Purpose", "Doel";
    Granted => "granted", "gegeven";
    Withdrawn => "withdrawn", "ingetrokken";
    NotAsked => "not recorded", "niet vastgelegd";
    Grant => "Grant", "Geven";
    Withdraw => "Withdraw", "Intrekken";
    ConfirmConsent => "Confirm the consent change", "Bevestig de wijziging van de toestemming";
    Confirm => "Confirm", "Bevestigen";
    Cancel => "Cancel", "Annuleren";
    ConsentChanged => "Consent changed.", "Toestemming gewijzigd.";
    Loyalty => "Loyalty", "Loyaliteit";
    MemberSince => "Member since", "Lid sinds";
    Points => "Points", "Punten";
    Tier => "Tier", "Niveau";
    NoTiers => "no tiers configured", "geen niveaus ingesteld";
    KeyMoments => "Key moments coming up", "Komende sleutelmomenten";
    Birthday => "Birthday", "Verjaardag";
    Anniversary => "Membership anniversary", "Lidmaatschapsjubileum";
    PointsThreshold => "Points threshold", "Puntendrempel";
    InDays => "in %d days", "over %d dagen";
    Today => "today", "vandaag";
    PointsToGo => "%d points to go", "nog %d punten";
    Reached => "reached", "bereikt";
    Traits => "Traits", "Kenmerken";
    TraitsNone => "No traits yet: they are computed after the customer's first purchase, by the next traits run.", "Nog geen kenmerken: die worden na de eerste aankoop berekend, bij de volgende run.";
    TraitsRange => "80 % range:", "80 %-bereik:";
    TraitsModel => "Predictions by", "Voorspellingen met";
    TraitsModelGain => "chosen by back-test, mean error below BG/NBD by", "gekozen met een terugtoets, gemiddelde fout lager dan BG/NBD met";
    TraitsProvisional => "Provisional: too little data yet to fit the models, so churn risk, expected purchases and CLV use population defaults. Why:", "Voorlopig: nog te weinig gegevens om de modellen te schatten, dus kans op afhaken, verwachte aankopen en CLV gebruiken standaardwaarden. Waarom:";
    Rfm => "RFM cell", "RFM-cel";
    RfmHelp => "Recency, frequency and monetary value, each 1 (low) to 5 (high) among all customers.", "Recentheid, frequentie en geldwaarde, elk 1 (laag) tot 5 (hoog) binnen alle klanten.";
    Clv => "Customer lifetime value", "Klantwaarde (CLV)";
    ClvHelp => "Expected spend over the traits horizon times the margin (the purchase model and Gamma-Gamma).", "Verwachte besteding over de horizon maal de marge (het aankoopmodel en Gamma-Gamma).";
    ChurnRisk => "Churn risk", "Kans op afhaken";
    ChurnHelp => "Chance that the customer no longer buys (1 − P(alive) of the purchase model).", "Kans dat de klant niet meer koopt (1 − P(actief) van het aankoopmodel).";
    ExpectedPurchases => "Expected purchases", "Verwachte aankopen";
    ExpectedHelp => "Purchases the model expects over the traits horizon.", "Aankopen die het model over de horizon verwacht.";
    FavouriteCategories => "Favourite categories", "Favoriete categorieën";
    FavouriteHelp => "Top three categories by spend (sensitive categories never appear).", "Top drie categorieën naar besteding (gevoelige categorieën nooit).";
    SaleShare => "Sale share", "Aandeel korting";
    SaleShareHelp => "Share of spend that was discounted.", "Deel van de besteding met korting.";
    Coupons => "Coupons", "Coupons";
    Issued => "Issued", "Uitgegeven";
    Redeemed => "Redeemed", "Ingewisseld";
    Timeline => "Timeline", "Tijdlijn";
    TimelineHelp => "The most recent receipts and online orders, newest first.", "De recentste bonnen en online bestellingen, nieuwste eerst.";
    Receipt => "Receipt", "Bon";
    Order => "Online order", "Online bestelling";
    When => "When", "Wanneer";
    Store => "Store", "Winkel";
    Till => "Till", "Kassa";
    Lines => "Lines", "Regels";
    Total => "Total", "Totaal";
    Privacy => "Privacy officer", "Privacyfunctionaris";
    Export => "Export everything (JSON)", "Alles exporteren (JSON)";
    Erase => "Erase this customer", "Deze klant wissen";
    EraseHelp => "Erasing removes the person's data and identifiers for good and tells every till. Receipts stay, anonymised. Type the profile id to confirm:", "Wissen verwijdert de gegevens en kenmerken van deze persoon definitief en meldt dat aan elke kassa. Bonnen blijven, geanonimiseerd. Typ het profiel-id ter bevestiging:";
    EraseMismatch => "The typed id does not match: nothing was erased.", "Het getypte id klopt niet: er is niets gewist.";
    Erased => "Erased", "Gewist";
    ErasedHelp => "The customer was erased: identifiers removed, receipts anonymised.", "De klant is gewist: kenmerken verwijderd, bonnen geanonimiseerd.";
    NotFound => "Not found", "Niet gevonden";
    Trigger => "Trigger", "Aanleiding";
    Stores => "Stores", "Winkels";
    AllStores => "all stores", "alle winkels";
    ControlShare => "Control group", "Controlegroep";
    Caps => "Caps", "Limieten";
    CapText => "at most %d per customer per %d days", "hoogstens %d per klant per %d dagen";
    WouldHave => "Would-have (control)", "Zou hebben gekregen (controle)";
    RedemptionRate => "Redemption rate", "Inwisselpercentage";
    Duplicates => "Duplicates", "Dubbele scans";
    Forgeries => "Forgeries", "Vervalsingen";
    Refused => "Refused", "Geweigerd";
    Uplift => "Uplift", "Extra besteding";
    UpliftWindow => "Spend per customer in the %d days after the first coupon (issuing receipt excluded).", "Besteding per klant in de %d dagen na de eerste coupon (de uitgevende bon niet meegeteld).";
    Treated => "Treated", "Ontvangers";
    Control => "Control", "Controle";
    SpendPerCustomer => "Spend per customer", "Besteding per klant";
    Difference => "Difference", "Verschil";
    Interval95 => "95% interval", "95%-interval";
    TooFew => "Too few customers yet to say how sure this is (%d treated, %d control; at least %d each needed).", "Nog te weinig klanten om te zeggen hoe zeker dit is (%d ontvangers, %d controle; minstens %d elk nodig).";
    NotSure => "The interval includes zero: the campaign may have no effect.", "Het interval bevat nul: de campagne heeft misschien geen effect.";
    Sure => "The interval excludes zero.", "Het interval bevat geen nul.";
    PerStore => "Per store", "Per winkel";
    IssuedRedeemedPerDay => "Issued and redeemed per day", "Uitgegeven en ingewisseld per dag";
    CumulativeSpend => "Cumulative spend per customer after the coupon, treated vs control", "Cumulatieve besteding per klant na de coupon, ontvangers vs controle";
    DaysAfter => "days after the coupon", "dagen na de coupon";
    NoCampaigns => "No campaign file is configured (hub.toml campaigns).", "Er is geen campagnebestand ingesteld (hub.toml campaigns).";
    Offer => "Offer", "Aanbod";
    ValidDays => "Valid days", "Geldig (dagen)";
    Size => "Size", "Omvang";
    Rule => "Rule", "Regel";
    Members => "Members", "Leden";
    MailingList => "Mailing list (consented only)", "Mailinglijst (alleen met toestemming)";
    ComputedAt => "Computed at", "Berekend op";
    NotComputed => "not computed yet", "nog niet berekend";
    Previous => "Previous", "Vorige";
    Next => "Next", "Volgende";
    PageOf => "page %d of %d", "pagina %d van %d";
    Status => "Status", "Status";
    LastSeen => "Last seen", "Laatst gezien";
    LastSeq => "Last seq", "Laatste seq";
    Backlog => "Backlog", "Achterstand";
    Journal => "Journal", "Journaal";
    Quota => "quota", "quotum";
    QuotaExceeded => "quota exceeded", "quotum overschreden";
    Chain => "Chain", "Keten";
    Epoch => "Certificate epoch", "Certificaat-epoch";
    Revoked => "Revoked", "Ingetrokken";
    Yes => "yes", "ja";
    No => "no", "nee";
    Connected => "connected", "verbonden";
    SilentHelp => "A till is silent when it is not connected and the hub has not heard from it for %d seconds.", "Een kassa is stil als hij niet verbonden is en de hub al %d seconden niets van hem hoorde.";
    NoTills => "No till has connected yet.", "Er heeft nog geen kassa verbinding gemaakt.";
    Details => "Data as a table", "Gegevens als tabel";
    Day => "Day", "Dag";
    Profile => "Profile", "Profiel";
    Segment => "Segment", "Segment";
    Reason => "Reason", "Reden";
    Since => "Since", "Sinds";
    Error => "Something went wrong", "Er ging iets mis";
    Forbidden => "This form expired or did not come from this console. Reload the page and try again.", "Dit formulier is verlopen of kwam niet van deze console. Laad de pagina opnieuw en probeer het nog eens.";
    BackTo => "Back", "Terug";
    Created => "Created", "Aangemaakt";
    Channels => "Channels", "Kanalen";
    Online => "Online", "Online";
    InStore => "In store", "In de winkel";
    Kpis => "Key figures", "Kerncijfers";
    Identifiers => "Identifiers", "Kenmerken";
    And => "and", "en";
    BrokenAt => "broken at seq", "gebroken bij seq";
    ByEmail => "e-mail (CSV)", "e-mail (CSV)";
    ByPost => "post (CSV)", "post (CSV)";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_has_both_languages() {
        for msg in Msg::ALL {
            for lang in Lang::ALL {
                assert!(!msg.text(lang).trim().is_empty(), "{msg:?} in {lang:?}");
            }
            // A placeholder in one language is in the other.
            assert_eq!(
                msg.text(Lang::En).matches("%d").count(),
                msg.text(Lang::Nl).matches("%d").count(),
                "{msg:?}"
            );
        }
    }

    #[test]
    fn accept_language_picks_the_best_weight_we_speak() {
        assert_eq!(accept_language("nl-NL,nl;q=0.9,en;q=0.8"), Some(Lang::Nl));
        assert_eq!(accept_language("de-DE,en;q=0.5,nl;q=0.7"), Some(Lang::Nl));
        assert_eq!(accept_language("en-GB, nl;q=0.2"), Some(Lang::En));
        assert_eq!(accept_language("fr, de"), None);
        assert_eq!(accept_language("nl;q=0, en"), Some(Lang::En));
        assert_eq!(accept_language(""), None);
        assert_eq!(accept_language(";;,q=,"), None);
    }
}
