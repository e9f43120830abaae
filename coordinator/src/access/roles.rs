//! Roles and what each may call. Admin may call everything; every other role may call its own
//! methods plus the read-only ones (the viewer's). The table is the one place a method's role
//! is decided: the RPC wrapper (`crate::rpc::operator_call`) asks it before any call runs.

use flashgate_proto::v1;
use serde::{Deserialize, Serialize};

/// What a credential may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: products, stations, credentials, enrolment tokens, and all other roles' calls.
    Admin,
    /// Create and cancel orders (quota).
    Orders,
    /// Upload releases, publish updates.
    Release,
    /// Update devices in the field and verify them.
    Field,
    /// Read only.
    Viewer,
}

impl Role {
    /// Every role, in the order the docs list them.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Orders,
        Role::Release,
        Role::Field,
        Role::Viewer,
    ];

    /// Its name, as the CLI takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Orders => "orders",
            Self::Release => "release",
            Self::Field => "field",
            Self::Viewer => "viewer",
        }
    }

    /// The role as the API shows it.
    pub fn to_proto(self) -> v1::OperatorRole {
        match self {
            Self::Admin => v1::OperatorRole::Admin,
            Self::Orders => v1::OperatorRole::Orders,
            Self::Release => v1::OperatorRole::Release,
            Self::Field => v1::OperatorRole::Field,
            Self::Viewer => v1::OperatorRole::Viewer,
        }
    }

    /// The role a request names; `None` for unspecified or unknown.
    pub fn from_proto(role: i32) -> Option<Self> {
        match v1::OperatorRole::try_from(role).ok()? {
            v1::OperatorRole::Admin => Some(Self::Admin),
            v1::OperatorRole::Orders => Some(Self::Orders),
            v1::OperatorRole::Release => Some(Self::Release),
            v1::OperatorRole::Field => Some(Self::Field),
            v1::OperatorRole::Viewer => Some(Self::Viewer),
            v1::OperatorRole::Unspecified => None,
        }
    }

    /// Whether a holder of this role may call a method that needs `needed`.
    pub fn permits(self, needed: Role) -> bool {
        self == Role::Admin || needed == Role::Viewer || self == needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The role a method needs (by the method name the RPC wrapper is given); `None` for a method
/// this table does not know, which is refused (a new method must be added here to be served).
pub fn needed(method: &str) -> Option<Role> {
    use Role::*;
    Some(match method {
        // Catalogue and trust: admin.
        "CreateProduct"
        | "RotateAuthorityKey"
        | "ApproveStation"
        | "RevokeStation"
        | "CreateOperator"
        | "ListOperators"
        | "RevokeOperator"
        | "CreateEnrolmentToken" => Admin,
        // Quota.
        "CreateOrder" | "CancelOrder" => Orders,
        // What is installed.
        "UploadRelease" | "PublishUpdate" | "StartRollout" | "PauseRollout" | "ResumeRollout" => {
            Release
        }
        // The field tool: a device's package (OS or app) and its receipt.
        "GetUpdatePackage" | "ReportUpdate" | "GetAppPackage" | "ReportAppInstall" => Field,
        // The field tool: genuine, unregistered or clone suspected (writes clone evidence).
        "StartDeviceVerification" | "VerifyDevice" => Field,
        // The field: a sealed message down to a device (configuration, commands).
        "SendDeviceMessage" => Field,
        // Reads.
        "ListProducts" | "ListReleases" | "GetOrderStatus" | "ListOrders" | "ListStations"
        | "GetDevice" | "ListDevices" | "ListLeases" | "GetCoordinatorInfo" | "GetUpdateStatus"
        | "GetDeviceStatus" | "QueryRecords" | "GetIngestStats" | "ListAuditEntries"
        | "VerifyAudit" | "GetRollout" | "ListRollouts" | "ListDeviceMessages" => Viewer,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_may_do_everything_others_their_own_and_reads() {
        assert!(Role::Admin.permits(Role::Orders));
        assert!(Role::Orders.permits(Role::Orders));
        assert!(Role::Field.permits(Role::Viewer));
        assert!(!Role::Orders.permits(Role::Release));
        assert!(!Role::Viewer.permits(Role::Field));
        assert!(!Role::Release.permits(Role::Admin));
        assert_eq!(needed("CreateOrder"), Some(Role::Orders));
        assert_eq!(needed("VerifyDevice"), Some(Role::Field));
        assert!(!Role::Viewer.permits(needed("StartDeviceVerification").unwrap()));
        assert_eq!(needed("NoSuchMethod"), None);
        for role in Role::ALL {
            assert_eq!(Role::from_proto(role.to_proto() as i32), Some(role));
        }
    }
}
