//! Roles and the permission table: the operation every RPC of every public service needs,
//! and which role may perform it.
//!
//! The role comes from the client certificate's Subject OU (first recognised value,
//! case-insensitive). `admin` may do everything; `viewer` (alias `reader`) may only read.
//! A certificate with no OU or an unknown one is refused for every method: being signed by
//! our CA proves who someone is, not what they may do.

use std::fmt;

/// A client's role, from its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    /// The role named by one OU value, if it names one.
    pub fn parse(ou: &str) -> Option<Role> {
        if ou.eq_ignore_ascii_case("admin") {
            Some(Role::Admin)
        } else if ou.eq_ignore_ascii_case("viewer") || ou.eq_ignore_ascii_case("reader") {
            Some(Role::Viewer)
        } else {
            None
        }
    }

    /// The first recognised role among a certificate's OU values.
    pub fn from_ous<'a>(ous: impl IntoIterator<Item = &'a str>) -> Option<Role> {
        ous.into_iter().find_map(Role::parse)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    pub fn may(self, op: Operation) -> bool {
        match self {
            Role::Admin => true,
            Role::Viewer => op.is_read_only(),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an RPC does, as far as permissions are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    RunJob,
    StopJob,
    CancelJob,
    DeleteJob,
    ReadJobs,
    ReadJobMetrics,
    ReadSystem,
    ReadNetworks,
    ManageNetworks,
    ReadVolumes,
    ManageVolumes,
    ReadRuntimes,
    ManageRuntimes,
}

impl Operation {
    pub fn is_read_only(self) -> bool {
        use Operation::*;
        match self {
            ReadJobs | ReadJobMetrics | ReadSystem | ReadNetworks | ReadVolumes | ReadRuntimes => {
                true
            }
            RunJob | StopJob | CancelJob | DeleteJob | ManageNetworks | ManageVolumes
            | ManageRuntimes => false,
        }
    }
}

/// The public services of package `joblet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Job,
    Network,
    Volume,
    Monitoring,
    Runtime,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Job => "JobService",
            Service::Network => "NetworkService",
            Service::Volume => "VolumeService",
            Service::Monitoring => "MonitoringService",
            Service::Runtime => "RuntimeService",
        }
    }
}

/// Declares [`Rpc`] and its [`Rpc::ALL`] from one list, so that no RPC can be missing from
/// the table the tests walk.
macro_rules! rpcs {
    ($($name:ident,)+) => {
        /// Every RPC of every public service. Method names are unique across services.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Rpc {
            $($name,)+
        }

        impl Rpc {
            pub const ALL: [Rpc; [$(stringify!($name),)+].len()] = [$(Rpc::$name,)+];
        }
    };
}

rpcs! {
    RunJob,
    GetJobStatus,
    StopJob,
    CancelJob,
    DeleteJob,
    DeleteAllJobs,
    GetJobLogs,
    ListJobs,
    StreamJobMetrics,
    GetJobMetrics,
    StreamJobTelematics,
    GetJobTelematics,
    CreateNetwork,
    ListNetworks,
    RemoveNetwork,
    CreateVolume,
    ListVolumes,
    RemoveVolume,
    GetSystemStatus,
    StreamSystemMetrics,
    ListRuntimes,
    GetRuntimeInfo,
    TestRuntime,
    RemoveRuntime,
    BuildRuntime,
    ValidateRuntimeYaml,
}

impl Rpc {
    /// The permission table: service, wire method name and required operation of each RPC.
    pub fn entry(self) -> (Service, &'static str, Operation) {
        use Operation as Op;
        use Service as S;
        match self {
            Rpc::RunJob => (S::Job, "RunJob", Op::RunJob),
            Rpc::GetJobStatus => (S::Job, "GetJobStatus", Op::ReadJobs),
            Rpc::StopJob => (S::Job, "StopJob", Op::StopJob),
            Rpc::CancelJob => (S::Job, "CancelJob", Op::CancelJob),
            Rpc::DeleteJob => (S::Job, "DeleteJob", Op::DeleteJob),
            Rpc::DeleteAllJobs => (S::Job, "DeleteAllJobs", Op::DeleteJob),
            Rpc::GetJobLogs => (S::Job, "GetJobLogs", Op::ReadJobs),
            Rpc::ListJobs => (S::Job, "ListJobs", Op::ReadJobs),
            Rpc::StreamJobMetrics => (S::Job, "StreamJobMetrics", Op::ReadJobMetrics),
            Rpc::GetJobMetrics => (S::Job, "GetJobMetrics", Op::ReadJobMetrics),
            Rpc::StreamJobTelematics => (S::Job, "StreamJobTelematics", Op::ReadJobMetrics),
            Rpc::GetJobTelematics => (S::Job, "GetJobTelematics", Op::ReadJobMetrics),
            Rpc::CreateNetwork => (S::Network, "CreateNetwork", Op::ManageNetworks),
            Rpc::ListNetworks => (S::Network, "ListNetworks", Op::ReadNetworks),
            Rpc::RemoveNetwork => (S::Network, "RemoveNetwork", Op::ManageNetworks),
            Rpc::CreateVolume => (S::Volume, "CreateVolume", Op::ManageVolumes),
            Rpc::ListVolumes => (S::Volume, "ListVolumes", Op::ReadVolumes),
            Rpc::RemoveVolume => (S::Volume, "RemoveVolume", Op::ManageVolumes),
            Rpc::GetSystemStatus => (S::Monitoring, "GetSystemStatus", Op::ReadSystem),
            Rpc::StreamSystemMetrics => (S::Monitoring, "StreamSystemMetrics", Op::ReadSystem),
            Rpc::ListRuntimes => (S::Runtime, "ListRuntimes", Op::ReadRuntimes),
            Rpc::GetRuntimeInfo => (S::Runtime, "GetRuntimeInfo", Op::ReadRuntimes),
            // Testing a runtime runs a job in it.
            Rpc::TestRuntime => (S::Runtime, "TestRuntime", Op::ManageRuntimes),
            Rpc::RemoveRuntime => (S::Runtime, "RemoveRuntime", Op::ManageRuntimes),
            Rpc::BuildRuntime => (S::Runtime, "BuildRuntime", Op::ManageRuntimes),
            // Validation parses client-supplied YAML for the build path: not a plain read.
            Rpc::ValidateRuntimeYaml => (S::Runtime, "ValidateRuntimeYAML", Op::ManageRuntimes),
        }
    }

    pub fn service(self) -> Service {
        self.entry().0
    }

    pub fn method(self) -> &'static str {
        self.entry().1
    }

    pub fn operation(self) -> Operation {
        self.entry().2
    }

    /// The HTTP/2 path of the RPC, `/joblet.JobService/RunJob`.
    pub fn path(self) -> String {
        format!("/joblet.{}/{}", self.service().as_str(), self.method())
    }

    /// The RPC a request path names, if any.
    pub fn from_path(path: &str) -> Option<Rpc> {
        let rest = path.strip_prefix("/joblet.")?;
        let (service, method) = rest.split_once('/')?;
        Rpc::ALL
            .into_iter()
            .find(|r| r.service().as_str() == service && r.method() == method)
    }

    /// Whether a client with this role (or none) may call this RPC.
    pub fn allowed_for(self, role: Option<Role>) -> bool {
        role.is_some_and(|r| r.may(self.operation()))
    }
}

impl fmt::Display for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.service().as_str(), self.method())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every `(service, method)` the public contract declares, read from its descriptor.
    fn contract_methods() -> BTreeSet<(String, String)> {
        use prost::Message;
        let fds = prost_types::FileDescriptorSet::decode(joblet_api_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        let mut out = BTreeSet::new();
        for file in fds.file {
            for svc in file.service {
                for m in &svc.method {
                    out.insert((svc.name().to_owned(), m.name().to_owned()));
                }
            }
        }
        out
    }

    #[test]
    fn table_covers_exactly_the_contract() {
        let ours: BTreeSet<(String, String)> = Rpc::ALL
            .iter()
            .map(|r| (r.service().as_str().to_owned(), r.method().to_owned()))
            .collect();
        assert_eq!(ours.len(), Rpc::ALL.len(), "duplicate entries in Rpc::ALL");
        assert_eq!(ours, contract_methods());
    }

    #[test]
    fn paths_round_trip() {
        for rpc in Rpc::ALL {
            assert_eq!(Rpc::from_path(&rpc.path()), Some(rpc), "{rpc}");
        }
        assert_eq!(
            Rpc::from_path("/joblet.RuntimeService/ValidateRuntimeYAML"),
            Some(Rpc::ValidateRuntimeYaml)
        );
        for bad in [
            "",
            "/",
            "/joblet.JobService/RunWorkflow",
            "/joblet.JobService/",
            "/other.JobService/RunJob",
            "/joblet.NetworkService/RunJob",
            "/joblet.JobService/runjob",
        ] {
            assert_eq!(Rpc::from_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn viewer_may_only_read() {
        let viewer_allowed: BTreeSet<&str> = Rpc::ALL
            .into_iter()
            .filter(|r| r.allowed_for(Some(Role::Viewer)))
            .map(Rpc::method)
            .collect();
        let expected: BTreeSet<&str> = [
            "GetJobStatus",
            "GetJobLogs",
            "ListJobs",
            "StreamJobMetrics",
            "GetJobMetrics",
            "StreamJobTelematics",
            "GetJobTelematics",
            "ListNetworks",
            "ListVolumes",
            "GetSystemStatus",
            "StreamSystemMetrics",
            "ListRuntimes",
            "GetRuntimeInfo",
        ]
        .into_iter()
        .collect();
        assert_eq!(viewer_allowed, expected);
    }

    #[test]
    fn admin_may_do_everything_and_no_role_nothing() {
        for rpc in Rpc::ALL {
            assert!(rpc.allowed_for(Some(Role::Admin)), "{rpc}");
            assert!(!rpc.allowed_for(None), "{rpc}");
        }
    }

    #[test]
    fn role_comes_from_the_first_recognised_ou() {
        assert_eq!(Role::from_ous(["ADMIN"]), Some(Role::Admin));
        assert_eq!(Role::from_ous(["Reader"]), Some(Role::Viewer));
        assert_eq!(Role::from_ous(["viewer", "admin"]), Some(Role::Viewer));
        assert_eq!(Role::from_ous(["team-a", "admin"]), Some(Role::Admin));
        assert_eq!(Role::from_ous(["developer", "ops"]), None);
        assert_eq!(Role::from_ous([" admin"]), None);
        assert_eq!(Role::from_ous(std::iter::empty()), None);
    }
}
