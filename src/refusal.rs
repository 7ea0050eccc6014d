//! Why two instances cannot link: the causes of the peer handshake's refusals that
//! retrying cannot fix. Below both `peer` (which detects them) and `metrics` (which
//! counts and renders them), so that neither imports the other for it.

/// Why two instances cannot link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    SameId = 0,
    BadToken = 1,
    BadVersion = 2,
}

impl Cause {
    pub const ALL: [Cause; 3] = [Cause::SameId, Cause::BadToken, Cause::BadVersion];

    /// The `cause` label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Cause::SameId => "same_instance_id",
            Cause::BadToken => "peer_token",
            Cause::BadVersion => "protocol_version",
        }
    }

    /// One line for `/health` and the log: the cause and the flag that fixes it.
    pub fn explain(self) -> &'static str {
        match self {
            Cause::SameId => {
                "a peer has this instance's id: give each instance a distinct --instance-id \
                 (RINHA_INSTANCE_ID), or unset it to derive one from the hostname and \
                 --peer-listen; also check that no --peer points at this instance itself"
            }
            Cause::BadToken => {
                "a peer has another shared secret: set the same --peer-token \
                 (RINHA_PEER_TOKEN) on every instance"
            }
            Cause::BadVersion => {
                "a peer speaks another peer protocol version: run the same rinha version \
                 on every instance"
            }
        }
    }
}
